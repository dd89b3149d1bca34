"""wsgate edge vs Debian nginx vs direct, on loopback: CPU per unit, latency, RSS.

    python bench/run.py [--quick] [--out bench/results/latest.json] [--reps N]
                        [--targets direct,nginx,nginx-64k,wsgate]

Client and origin run on CPU 0, the proxy on CPU 1 (taskset), so the proxy
has a core of its own. Each proxy's own CPU time (utime+stime of all its
processes, from /proc/PID/stat) is read before and after every phase and
divided by the units the phase completed. Throughput is printed too, but on
two cores the client and origin are often the limit, so it cannot rank
proxies; CPU per unit can. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):  # `python bench/X.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import procstat, wsclient
from bench.targets import (
    Process,
    Target,
    direct_target,
    nginx_target,
    origin_process,
    wsgate_target,
    wsgate_three_origins_target,
)

ALL_TARGETS = ("direct", "nginx", "nginx-64k", "wsgate", "wsgate-3")
DEFAULT_TARGETS = ("direct", "nginx", "nginx-64k", "wsgate")
PROXIES = ("nginx", "nginx-64k", "wsgate", "wsgate-3")
NGINXES = ("nginx", "nginx-64k")


@dataclass(frozen=True)
class Plan:
    """Sizes of every phase. Each phase also stops at its own deadline."""

    reps: int
    rt_rounds: int  # interleaved 32 B round trips per target
    small_conns: int
    small_batch: int  # 100 B frames sent back to back on each connection per round
    small_rounds: int
    large_count: int  # 64 KiB messages, one in flight
    handshakes: int
    http_seconds: int
    http_conns: int
    idle_sizes: tuple[int, ...]
    phase_seconds: float  # deadline of one phase
    budget_seconds: float  # the whole run stops starting phases after this


# Sized so that each phase costs a proxy at least ~20 ticks of /proc/PID/stat.
FULL = Plan(reps=3, rt_rounds=10000, small_conns=8, small_batch=100, small_rounds=1000,
            large_count=8000, handshakes=3000, http_seconds=4, http_conns=16,
            idle_sizes=(1000, 5000), phase_seconds=15, budget_seconds=720)
QUICK = Plan(reps=3, rt_rounds=2500, small_conns=8, small_batch=100, small_rounds=300,
             large_count=2000, handshakes=1000, http_seconds=1, http_conns=16,
             idle_sizes=(1000,), phase_seconds=5, budget_seconds=140)


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    unit: str


CPU_FIGURES = (
    Figure("rt_cpu_us", "CPU per 32 B round trip", "µs"),
    Figure("small_cpu_us", "CPU per 100 B message", "µs"),
    Figure("large_cpu_us", "CPU per 64 KiB message", "µs"),
    Figure("handshake_cpu_us", "CPU per WS handshake", "µs"),
    Figure("http_cpu_us", "CPU per HTTP GET 30 KB", "µs"),
    Figure("added_p50_us", "added p50 latency", "µs"),
    Figure("added_p99_us", "added p99 latency", "µs"),
)
THROUGHPUT_FIGURES = (
    Figure("rt_p50_us", "round trip p50", "µs"),
    Figure("rt_p99_us", "round trip p99", "µs"),
    Figure("small_per_s", "100 B messages/s", "/s"),
    Figure("large_mb_s", "64 KiB echo MB/s", "MB/s"),
    Figure("handshake_per_s", "handshakes/s", "/s"),
    Figure("http_per_s", "HTTP req/s", "/s"),
)


class Bench:
    def __init__(self, plan: Plan, names: list[str], workdir: Path, pin: bool,
                 wsgate_args: list[str]) -> None:
        self.plan = plan
        self.names = names
        self.workdir = workdir
        self.client_cpu = 0 if pin else None
        self.proxy_cpu = 1 if pin else None
        self.wsgate_args = wsgate_args
        self.secret = secrets.token_urlsafe(24)
        self.started = time.monotonic()
        self.load_before = os.getloadavg()
        self.values: dict[str, dict[str, list[float]]] = {}
        self.raw: list[dict[str, object]] = []
        self.notes: list[str] = []
        self.checks: dict[str, object] = {}
        self.failed: dict[str, str] = {}
        self.origin: Process | None = None
        self.live: dict[str, Target] = {}

    # -- bookkeeping ------------------------------------------------------------------

    def record(self, key: str, target: str, value: float, **raw: object) -> None:
        self.values.setdefault(key, {}).setdefault(target, []).append(value)
        self.raw.append({"figure": key, "target": target, "value": value, **raw})

    def out_of_time(self) -> bool:
        return time.monotonic() - self.started > self.plan.budget_seconds

    def deadline(self) -> float:
        return time.monotonic() + self.plan.phase_seconds

    def fail(self, name: str, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        print(f"  !! {name}: {message}", file=sys.stderr)
        self.failed[name] = message
        target = self.live.pop(name, None)
        if target is not None and target.process is not None:
            target.process.stop()

    # -- targets ----------------------------------------------------------------------

    def make_target(self, name: str, instance: str = "") -> Target:
        assert self.origin is not None
        wd = self.workdir / instance if instance else self.workdir
        if name == "direct":
            return direct_target(self.origin.port, self.secret)
        if name in NGINXES:
            return nginx_target(name, wd, self.origin.port, self.secret, name == "nginx-64k",
                                self.proxy_cpu)
        if name == "wsgate":
            return wsgate_target(wd, self.origin.port, self.secret, self.proxy_cpu,
                                 self.wsgate_args)
        if name == "wsgate-3":
            return wsgate_three_origins_target(wd, self.origin.port, self.secret,
                                               self.proxy_cpu, self.wsgate_args)
        raise ValueError(f"unknown target {name!r}")

    def request(self, target: Target) -> bytes:
        return wsclient.upgrade_request("127.0.0.1", target.port, "/ws",
                                        target.client_headers)

    def start(self) -> None:
        self.origin = origin_process(self.workdir, self.secret, self.client_cpu)
        self.origin.start()
        for name in self.names:
            try:
                target = self.make_target(name)
                if target.process is not None:
                    target.process.start()
                self.live[name] = target
                self.checks[name] = self.verify(target)
                self.warm(target)
            except Exception as exc:
                self.fail(name, exc)

    def stop(self) -> None:
        for target in self.live.values():
            if target.process is not None:
                target.process.stop()
        self.live.clear()
        if self.origin is not None:
            self.origin.stop()

    def verify(self, target: Target) -> dict[str, object]:
        """Prove the target does the job: secret and forwarded headers arrive, 101 works."""
        conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=10)
        try:
            conn.request("GET", "/_bench/headers", headers=target.client_headers)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise wsclient.BenchError(f"GET /_bench/headers answered {resp.status}")
            seen = {k for k, _ in json.loads(body)}
            conn.request("GET", "/static/x.js", headers=target.client_headers)
            resp = conn.getresponse()
            asset = resp.read()
            if resp.status != 200 or len(asset) != 30 * 1024:
                raise wsclient.BenchError(f"GET /static/x.js: {resp.status}, {len(asset)} B")
            asset_headers = {k.lower(): v for k, v in resp.getheaders()
                             if k.lower() in ("cache-control", "x-worker-proxy")}
        finally:
            conn.close()
        ws = wsclient.open_ws(target.port, self.request(target))
        ws.round_trip(wsclient.client_frame(b"x" * 32))
        ws.close()
        wanted = {"x-cf-secret", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
                  "x-request-id", "x-real-ip"}
        return {"origin_saw": sorted(seen & wanted), "asset_headers": asset_headers}

    def warm(self, target: Target) -> None:
        ws = wsclient.open_ws(target.port, self.request(target))
        frame = wsclient.client_frame(b"w" * 32)
        for _ in range(300):
            ws.round_trip(frame)
        ws.round_trip(wsclient.client_frame(b"w" * 65536))
        ws.close()
        wsclient.handshakes(target.port, self.request(target), 30, self.deadline())
        self.wrk(target, 1)

    # -- measuring --------------------------------------------------------------------

    @contextmanager
    def cpu(self, targets: list[Target]) -> Iterator[dict[str, float]]:
        """Yields a dict filled, on exit, with each proxy's CPU seconds spent inside.

        The figure is /proc/PID/stat's utime+stime; schedstat's finer count of
        the same time goes into the raw JSON (key "<name>/sched") as a cross-check.
        """
        before = {t.name: procstat.usage(t.pid) for t in targets if t.pid is not None}
        spent: dict[str, float] = {}
        yield spent
        for t in targets:
            if t.pid is not None:
                after = procstat.usage(t.pid)
                spent[t.name] = after.cpu_s - before[t.name].cpu_s
                spent[t.name + "/sched"] = after.sched_s - before[t.name].sched_s
                spent[t.name + "/sys"] = after.sys_s - before[t.name].sys_s

    def phase_rt(self, rep: int) -> None:
        """32 B round trips, one in flight, all targets interleaved round by round."""
        targets = list(self.live.values())
        frame = wsclient.client_frame(b"r" * 32)
        conns = [wsclient.open_ws(t.port, self.request(t)) for t in targets]
        try:
            with self.cpu(targets) as spent:
                samples = wsclient.timed_round_trips(conns, frame, self.plan.rt_rounds,
                                                     self.deadline())
        finally:
            for c in conns:
                c.close()
        p50: dict[str, float] = {}
        p99: dict[str, float] = {}
        for t, lat in zip(targets, samples, strict=True):
            lat.sort()
            n = len(lat)
            p50[t.name] = lat[n // 2] / 1000
            p99[t.name] = lat[min(n - 1, (n * 99) // 100)] / 1000
            self.record("rt_p50_us", t.name, p50[t.name], rep=rep, n=n)
            self.record("rt_p99_us", t.name, p99[t.name], rep=rep, n=n)
            if t.name in spent:
                self.record("rt_cpu_us", t.name, spent[t.name] / n * 1e6, rep=rep, n=n,
                            cpu_s=spent[t.name], sched_s=spent[t.name + "/sched"],
                            sys_s=spent[t.name + "/sys"])
        if "direct" in p50:
            for name in p50:
                if name != "direct":
                    self.record("added_p50_us", name, p50[name] - p50["direct"], rep=rep)
                    self.record("added_p99_us", name, p99[name] - p99["direct"], rep=rep)

    def timed(self, target: Target, key_cpu: str, run: Callable[[], int],
              rate_key: str, rate: Callable[[int, float], float], rep: int) -> None:
        with self.cpu([target]) as spent:
            t0 = time.perf_counter()
            units = run()
            wall = time.perf_counter() - t0
        if units <= 0:
            raise wsclient.BenchError(f"{key_cpu}: no unit completed")
        self.record(rate_key, target.name, rate(units, wall), rep=rep, units=units, wall_s=wall)
        if target.name in spent:
            self.record(key_cpu, target.name, spent[target.name] / units * 1e6, rep=rep,
                        units=units, wall_s=wall, cpu_s=spent[target.name],
                        sched_s=spent[target.name + "/sched"], sys_s=spent[target.name + "/sys"])

    def phase_small(self, target: Target, rep: int) -> None:
        p = self.plan
        batch = wsclient.client_frame(b"s" * 100) * p.small_batch
        conns = [wsclient.open_ws(target.port, self.request(target)) for _ in range(p.small_conns)]
        try:
            self.timed(target, "small_cpu_us",
                       lambda: wsclient.pipelined(conns, batch, p.small_batch, p.small_rounds,
                                                  self.deadline()),
                       "small_per_s", lambda n, s: n / s, rep)
        finally:
            for c in conns:
                c.close()

    def phase_large(self, target: Target, rep: int) -> None:
        frame = wsclient.client_frame(os.urandom(65536))
        conn = wsclient.open_ws(target.port, self.request(target))

        def run() -> int:
            deadline = self.deadline()
            for i in range(self.plan.large_count):
                if time.monotonic() > deadline:
                    return i
                conn.round_trip(frame)
            return self.plan.large_count
        try:
            self.timed(target, "large_cpu_us", run, "large_mb_s",
                       lambda n, s: n * 65536 / s / 1e6, rep)
        finally:
            conn.close()

    def phase_handshake(self, target: Target, rep: int) -> None:
        request = self.request(target)
        self.timed(target, "handshake_cpu_us",
                   lambda: wsclient.handshakes(target.port, request, self.plan.handshakes,
                                               self.deadline()),
                   "handshake_per_s", lambda n, s: n / s, rep)

    def wrk(self, target: Target, seconds: int) -> tuple[int, float]:
        """Run wrk; return (completed requests, seconds). Non-2xx answers are an error."""
        argv = ["wrk", "-t1", f"-c{self.plan.http_conns}", f"-d{seconds}s", "--timeout", "5s"]
        for k, v in target.client_headers.items():
            argv += ["-H", f"{k}: {v}"]
        argv.append(f"http://127.0.0.1:{target.port}/static/x.js")
        if self.client_cpu is not None:
            argv = ["taskset", "-c", str(self.client_cpu), *argv]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30,
                             check=False).stdout
        m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
        if m is None:
            raise wsclient.BenchError(f"wrk output not understood: {out[-300:]!r}")
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        errors = re.search(r"Socket errors: (.*)", out)
        if bad or errors:
            raise wsclient.BenchError(f"wrk saw errors: {(bad or errors).group(0)}")  # type: ignore[union-attr]
        wall = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
        return int(m.group(1)), wall

    def phase_http(self, target: Target, rep: int) -> None:
        with self.cpu([target]) as spent:
            n, wall = self.wrk(target, self.plan.http_seconds)
        self.record("http_per_s", target.name, n / wall, rep=rep, units=n, wall_s=wall)
        if target.name in spent:
            self.record("http_cpu_us", target.name, spent[target.name] / n * 1e6, rep=rep,
                        units=n, cpu_s=spent[target.name], sched_s=spent[target.name + "/sched"],
                        sys_s=spent[target.name + "/sys"])

    def phase_idle(self, name: str, size: int, rep: int) -> None:
        """RSS per idle WebSocket, on a fresh proxy so freed memory cannot be reused."""
        target = self.make_target(name, f"idle-{name}-{size}-{rep}")
        assert target.process is not None
        target.process.start()
        try:
            self.warm(target)
            time.sleep(0.3)
            base = procstat.usage(target.process.pid).rss_bytes
            conns = wsclient.open_many(target.port, self.request(target), size,
                                       time.monotonic() + max(self.plan.phase_seconds, 30))
            try:
                time.sleep(1.0)  # let the proxy settle (lazy buffers, log flushes)
                held = procstat.usage(target.process.pid)
                per_ws = (held.rss_bytes - base) / size / 1024
                self.record(f"idle_rss_kb_{size}", name, per_ws, rep=rep, base_rss=base,
                            held_rss=held.rss_bytes, pids=list(held.pids))
            finally:
                wsclient.close_many(conns)
        finally:
            target.process.stop()

    # -- the run ----------------------------------------------------------------------

    def run(self) -> None:
        p = self.plan
        per_target: list[tuple[str, Callable[[Target, int], None]]] = [
            ("small", self.phase_small), ("large", self.phase_large),
            ("handshake", self.phase_handshake), ("http", self.phase_http)]
        for rep in range(p.reps):
            order = list(self.live)
            order = order[rep % len(order):] + order[:rep % len(order)] if order else order
            print(f"rep {rep + 1}/{p.reps} ({time.monotonic() - self.started:.0f}s)",
                  file=sys.stderr)
            if self.out_of_time():
                self.notes.append(f"budget reached before rep {rep + 1}")
                break
            try:
                self.phase_rt(rep)
            except Exception as exc:
                self.notes.append(f"rt rep {rep + 1}: {exc}")
            for phase, fn in per_target:
                for name in order:
                    if name not in self.live or self.out_of_time():
                        continue
                    try:
                        fn(self.live[name], rep)
                    except Exception as exc:
                        self.notes.append(f"{phase} {name} rep {rep + 1}: {exc}")
                        print(f"  !! {phase} {name}: {exc}", file=sys.stderr)
            for size in p.idle_sizes:
                for name in order:
                    if name == "direct" or name not in self.live or self.out_of_time():
                        continue
                    try:
                        self.phase_idle(name, size, rep)
                    except Exception as exc:
                        self.notes.append(f"idle {size} {name} rep {rep + 1}: {exc}")
                        print(f"  !! idle {size} {name}: {exc}", file=sys.stderr)


# -- summarising ----------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    median: float
    low: float
    high: float
    n: int


def summarise(values: list[float]) -> Summary:
    return Summary(statistics.median(values), min(values), max(values), len(values))


def ratio(summaries: dict[str, Summary], over: tuple[str, ...],
          lower_is_better: bool = True) -> float | None:
    """wsgate's median over the best median among `over` (None when either is missing)."""
    if "wsgate" not in summaries:
        return None
    others = [summaries[n].median for n in over if n in summaries]
    if not others:
        return None
    best = min(others) if lower_is_better else max(others)
    return summaries["wsgate"].median / best if best else None


def fmt(s: Summary | None) -> str:
    if s is None:
        return "n/a"
    digits = 0 if abs(s.median) >= 100 else 1 if abs(s.median) >= 10 else 2
    return f"{s.median:.{digits}f} [{s.low:.{digits}f}–{s.high:.{digits}f}]"


def table(values: dict[str, dict[str, list[float]]], names: list[str],
          figures: tuple[Figure, ...], lower_is_better: bool, ratio_over: tuple[str, ...],
          ratio_label: str) -> str:
    header = ["figure", *names, ratio_label]
    rows = [header]
    for f in figures:
        per = {n: summarise(v) for n, v in values.get(f.key, {}).items() if v}
        r = ratio(per, ratio_over, lower_is_better)
        rows.append([f"{f.label} ({f.unit})", *(fmt(per.get(n)) for n in names),
                     "n/a" if r is None else f"{r:.2f}"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def kernel_share(raw: list[dict[str, object]]) -> dict[str, dict[str, list[float]]]:
    """Per CPU figure and target: the share of the proxy's CPU spent in the kernel."""
    out: dict[str, dict[str, list[float]]] = {}
    for r in raw:
        cpu, sys_s = r.get("cpu_s"), r.get("sys_s")
        if isinstance(cpu, float) and isinstance(sys_s, float) and cpu > 0:
            out.setdefault(str(r["figure"]), {}).setdefault(str(r["target"]), []).append(
                100 * sys_s / cpu)
    return out


def report(bench: Bench, names: list[str]) -> str:
    values = bench.values
    memory = tuple(Figure(f"idle_rss_kb_{n}", f"RSS per idle WS at {n:,}", "KB")
                   for n in bench.plan.idle_sizes)
    proxies = [n for n in names if n != "direct"]
    parts = [
        "Proxy CPU per unit and added latency (median [min–max] over reps; lower is better)",
        table(values, proxies, CPU_FIGURES + memory, True, NGINXES, "wsgate/best nginx"),
        "",
        "Throughput and raw latency (client and origin share CPU 0: not a ranking)",
        table(values, names, THROUGHPUT_FIGURES[:2], True, ("direct",), "wsgate/direct"),
        table(values, names, THROUGHPUT_FIGURES[2:], False, ("direct",), "wsgate/direct"),
        "",
        "Kernel (system) share of each proxy's CPU, % (the rest is the proxy's own code)",
        table(kernel_share(bench.raw), proxies,
              tuple(Figure(f.key, f.label, "% sys") for f in CPU_FIGURES[:5]), True, NGINXES,
              "wsgate/best nginx"),
    ]
    return "\n".join(parts)


def git_state() -> dict[str, str]:
    """Which code was measured: the commit, and whether the edge had local changes."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                                  check=False, cwd=Path(__file__).parent).stdout.strip()
        except OSError:
            return ""
    dirty = git("status", "--porcelain", "--", "../src/wsgate/edge", "../src/wsgate/policy")
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "edge_changes": "uncommitted" if dirty else "none"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller phases, < 3 minutes")
    parser.add_argument("--out", type=Path, default=Path("bench/results/latest.json"))
    parser.add_argument("--reps", type=int, help="repetitions of every figure (min 3)")
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                        help="comma-separated subset of " + ",".join(ALL_TARGETS))
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    parser.add_argument("--wsgate-arg", action="append", default=[],
                        help="extra argument for `wsgate edge` (repeatable)")
    args = parser.parse_args()

    plan = QUICK if args.quick else FULL
    if args.reps is not None:
        plan = Plan(**{**asdict(plan), "reps": max(3, args.reps)})
    names = [n for n in args.targets.split(",") if n]
    unknown = sorted(set(names) - set(ALL_TARGETS))
    if unknown:
        parser.error(f"unknown targets: {', '.join(unknown)}")
    needed = ["wrk", "taskset"] + (["nginx"] if set(names) & set(NGINXES) else [])
    for tool in needed:
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin") is None:
            parser.error(f"{tool} not found (Debian packages: wrk, nginx-light, util-linux)")
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2
    if pin:
        os.sched_setaffinity(0, {0})  # the client shares CPU 0 with the origin
    # 5,000 idle WebSockets: the client and origin hold 5,000 sockets, a proxy 10,000.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(plan.idle_sizes) * 2 + 1000
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want * 2, hard), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < want:
        print(f"warning: RLIMIT_NOFILE {soft} < {want}; idle phases may fail", file=sys.stderr)

    workdir = Path(tempfile.mkdtemp(prefix="wsgate-bench-"))
    bench = Bench(plan, names, workdir, pin, args.wsgate_arg)
    print(f"workdir {workdir}; {'quick' if args.quick else 'full'} run, {plan.reps} reps, "
          f"pinned={pin}", file=sys.stderr)
    try:
        bench.start()
        bench.run()
    except KeyboardInterrupt:
        bench.notes.append("interrupted")
    finally:
        bench.stop()
    elapsed = time.monotonic() - bench.started
    present = [n for n in names if n not in bench.failed]
    text = report(bench, present)
    print(text)
    for name, why in bench.failed.items():
        print(f"not measured: {name}: {why}")
    for note in bench.notes:
        print(f"note: {note}")
    print(f"elapsed {elapsed:.0f}s")
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "load_before": bench.load_before},
        "git": git_state(), "env": {"PYTHONOPTIMIZE": os.environ.get("PYTHONOPTIMIZE", "")},
        "plan": asdict(plan), "pinned": pin, "elapsed_s": elapsed,
        "targets": names, "failed": bench.failed, "notes": bench.notes,
        "checks": bench.checks,
        "summary": {k: {n: asdict(summarise(v)) for n, v in per.items()}
                    for k, per in bench.values.items()},
        "raw": bench.raw, "table": text,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"raw results: {args.out}")
    if bench.failed:
        print(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if not bench.failed else 1


if __name__ == "__main__":
    sys.exit(main())
