"""Admission control at the edge: the thin layer between the driver and the pure core
(`wsgate.policy.admission`). It adds what the core must not know: metrics per limit,
and the flood rule for refusal log events, the origin guard's rule
(`wsgate.guard.policy.RefusalLimiter`): per client address, the first refusals of a
window are logged one by one, the rest are counted into one summary event.

The driver's side of the contract (docs/admission.md):
- `connection_opened()` for each accepted client connection; False: answer
  `connection_refusal` and close. The count it checks is the driver's own
  (`open_connections`), so it cannot drift from what is really open.
- `check_request(client_ip, now)` before a plain request, `open_websocket(client_ip,
  origin_url, now)` before an upgrade goes upstream; `close_websocket` once for each
  admitted upgrade, when its tunnel ends or the upgrade fails.
- For every refusal, `log_alone(client_ip, refusal, now, websocket)`: True, log it as
  the exchange's own event; False, it was counted into a summary written later.
- `flush()` at shutdown: summaries still pending are written.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Final

from wsgate.config import AdmissionLimits, Origin
from wsgate.edge.metrics import EdgeMetrics
from wsgate.guard.policy import RefusalLimiter, Summary
from wsgate.logs.events import LOGGER_NAME, HttpRequest, build_event, emit
from wsgate.policy.admission import LIMIT_STATUS, AdmissionState, Refusal

__all__ = ["Admission", "Refusal"]

# How often (at most) an admitted request sweeps the flood windows for due summaries.
_SWEEP_INTERVAL_S: Final = 1.0


def _log_through_logging(line: str) -> None:
    emit(logging.getLogger(LOGGER_NAME), json.loads(line))


class Admission:
    def __init__(self, limits: AdmissionLimits, metrics: EdgeMetrics, *,
                 open_connections: Callable[[], int],
                 write_line: Callable[[str], None] | None = None,
                 flood_limit: int = 10, flood_window_s: float = 60.0) -> None:
        """`open_connections` tells how many client connections (tunnels included) are
        open now; `write_line` writes a summary event (default: the events logger)."""
        self.state = AdmissionState(limits)
        self.open_connections = open_connections
        self.enabled = self.state.enabled
        self.metrics = metrics
        self.write_line = write_line or _log_through_logging
        self.flood = RefusalLimiter(flood_limit, flood_window_s)
        self._last_sweep = 0.0
        self.connection_refusal = self.state.connection_refusal

    # connections
    def connection_opened(self) -> bool:
        if self.state.connection_opened(self.open_connections()):
            self.metrics.admission_refused("max_connections")
            return False
        return True

    # requests and sessions
    def check_request(self, client_ip: str, now: float) -> Refusal | None:
        refusal = self.state.check_request(client_ip, now)
        if refusal is not None:
            self.metrics.admission_refused(refusal.limit)
        elif now - self._last_sweep >= _SWEEP_INTERVAL_S:
            self._sweep(now)
        return refusal

    def open_websocket(self, client_ip: str, origin_url: str, now: float) -> Refusal | None:
        refusal = self.state.open_websocket(client_ip, origin_url, now)
        if refusal is not None:
            self.metrics.admission_refused(refusal.limit)
        return refusal

    def close_websocket(self, client_ip: str, origin_url: str) -> None:
        self.state.close_websocket(client_ip, origin_url)

    def full_origins(self, origins: Iterable[Origin]) -> frozenset[Origin]:
        """The origins at max_websockets_per_origin: the balancer steers new sessions
        to the others."""
        has_room = self.state.origin_has_room
        return frozenset(o for o in origins if not has_room(o.url))

    # refusal log events
    def log_alone(self, client_ip: str, refusal: Refusal, now: float, websocket: bool) -> bool:
        log_it, due = self.flood.note(client_ip, now, refusal.limit, "", websocket)
        self._last_sweep = now
        for summary in due:
            self._write_summary(summary)
        return log_it

    def flush(self) -> None:
        for summary in self.flood.flush():
            self._write_summary(summary)

    def _sweep(self, now: float) -> None:
        self._last_sweep = now
        for summary in self.flood.due(now):
            self._write_summary(summary)

    def _write_summary(self, summary: Summary) -> None:
        limit = summary.reason
        http = HttpRequest(method="GET", url=summary.path, status=LIMIT_STATUS[limit],
                           latency_s=0.0, remote_ip=summary.address)
        self.write_line(json.dumps(build_event(
            source="edge", message="Request refused", severity="WARNING", http=http,
            isWebSocket=summary.is_websocket, errorClass=f"admission-{limit}",
            refusedCount=summary.count,
            error=f"{summary.count} more admission refusals ({limit}) for "
                  f"{summary.address} within {self.flood.window_s:g}s (summarised)")))
