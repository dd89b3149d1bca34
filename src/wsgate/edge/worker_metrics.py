"""The workers' metrics as one exposition, for the supervisor's single admin listener.

Each worker keeps its `EdgeMetrics` in its own memory, so the request path costs what
it costs in a single process (a shared-memory mode such as prometheus_client's
multiprocess files costs ~9 µs more per request), and sends the supervisor a text
snapshot every second and a last one when it exits. The supervisor sums them:

- counters and histograms over every worker that ever ran in this supervisor: a
  worker that exits (retired by a reload, or replaced after dying) leaves its last
  snapshot in the retired totals, so sums never go backwards;
- gauges over the live workers only (a dead worker's open tunnels died with it);
- `wsgate_edge_worker_requests_total{worker}`: requests and handshakes answered per
  worker slot (`wsgate_edge_requests_total` of that slot's processes), so the share
  of each worker shows.

A worker killed outright loses at most its last second of counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

SampleKey = tuple[str, tuple[tuple[str, str], ...]]  # sample name, sorted labels

REQUESTS: Final = "wsgate_edge_requests"
SUMMED_WHEN_GONE: Final = frozenset({"counter", "histogram", "summary"})


@dataclass
class Family:
    name: str
    documentation: str
    type: str
    samples: dict[SampleKey, float] = field(default_factory=dict)


def parse_exposition(text: bytes) -> dict[str, Family]:
    families: dict[str, Family] = {}
    for metric in text_string_to_metric_families(text.decode("utf-8")):
        family = families.setdefault(
            metric.name, Family(metric.name, metric.documentation, metric.type))
        for sample in metric.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            family.samples[key] = family.samples.get(key, 0.0) + sample.value
    return families


def add_into(total: dict[str, Family], part: dict[str, Family], *, gauges: bool) -> None:
    """Sum `part` into `total` sample by sample; gauges only when `gauges`."""
    for name, family in part.items():
        if not gauges and family.type not in SUMMED_WHEN_GONE:
            continue
        into = total.setdefault(name, Family(name, family.documentation, family.type))
        for key, value in family.samples.items():
            into.samples[key] = into.samples.get(key, 0.0) + value


def requests_answered(families: dict[str, Family]) -> float:
    family = families.get(REQUESTS)
    return sum(family.samples.values()) if family is not None else 0.0


class WorkersCollector:
    """A prometheus_client collector over the live workers' latest snapshots (from
    `live`: (worker slot, snapshot) pairs) and the retired totals."""

    def __init__(self, live: Callable[[], Iterable[tuple[str, bytes]]]) -> None:
        self.live = live
        self.retired: dict[str, Family] = {}
        self.retired_requests: dict[str, float] = {}

    def worker_exited(self, slot: str, snapshot: bytes) -> None:
        if not snapshot:
            return
        families = parse_exposition(snapshot)
        add_into(self.retired, families, gauges=False)
        self.retired_requests[slot] = (self.retired_requests.get(slot, 0.0)
                                       + requests_answered(families))

    def collect(self) -> Iterator[Metric]:
        total: dict[str, Family] = {}
        add_into(total, self.retired, gauges=False)
        per_slot = dict(self.retired_requests)
        for slot, snapshot in self.live():
            families = parse_exposition(snapshot)
            add_into(total, families, gauges=True)
            per_slot[slot] = per_slot.get(slot, 0.0) + requests_answered(families)
        for family in total.values():
            metric = Metric(family.name, family.documentation, family.type)
            for (sample, labels), value in family.samples.items():
                metric.add_sample(sample, dict(labels), value)
            yield metric
        per_worker = Metric("wsgate_edge_worker_requests",
                            "HTTP requests and WebSocket handshakes answered, by worker slot",
                            "counter")
        for slot, value in sorted(per_slot.items()):
            per_worker.add_sample("wsgate_edge_worker_requests_total", {"worker": slot}, value)
        yield per_worker
