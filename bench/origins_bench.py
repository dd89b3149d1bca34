"""What several origins add to a request on the edge, in µs of CPU per call.

    python -m bench.origins_bench [--scale 0.01]

A route with one origin pays one call that returns at once. A route with three
pays: reading the Cookie header, the balancer's choice (a valid affinity cookie is
a dict lookup and a constant-time compare; no cookie is a least-loaded pick with a
Set-Cookie value ready-made), and, when the choice is not the first origin,
rewriting the Host line of the upstream head. Compare the sum with bench.micro's
request-path total (tens of µs) to see the share.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from wsgate.config import EdgeConfig, Health, parse_route
from wsgate.edge.exchange import EdgeRules, RequestPlan, upstream_head
from wsgate.edge.metrics import EdgeMetrics
from wsgate.policy.balance import Balance, cookie_value, derive_key

SECRET = "bench-secret"
URLS = ["http://10.0.0.11:8501", "http://10.0.0.12:8501", "http://10.0.0.13:8501"]


def per_call(fn: Callable[[], object], n: int) -> float:
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t0) / n * 1e6


def steps() -> list[tuple[str, Callable[[], object], int]]:
    one = parse_route("*/*", URLS[0], "routes[0]")
    three = parse_route("*/*", URLS, "routes[1]")
    config = EdgeConfig(routes=(three,), secret=SECRET)
    balance = Balance([one, three], key=derive_key(SECRET), cookie_name="wsgate_affinity",
                      secure=True, thresholds=Health())
    cookie = b"theme=dark; wsgate_affinity=" + cookie_value(derive_key(SECRET), three,
                                                           three.origins[1])
    headers = [(b"host", b"app.example.com"), (b"user-agent", b"Mozilla/5.0"),
               (b"accept", b"*/*"), (b"cookie", cookie), (b"connection", b"keep-alive")]
    rules = EdgeRules.from_config(config)
    fields = b"x-forwarded-for: 1.2.3.4\r\n\r\n"

    def cookie_header() -> object:
        found = [v for n, v in headers if n == b"cookie"]
        return b"; ".join(found) if found else None

    plan = RequestPlan(three, False, b"", b"GET / HTTP/1.1\r\n", fields, "none",
                       three.origins[0])

    def moved() -> object:
        plan.origin = three.origins[1]  # the balancer's choice
        return upstream_head(plan, rules)

    EdgeMetrics()  # the edge's registry exists in the real process too
    return [
        ("one origin: choose", lambda: balance.choose(one, None), 200_000),
        ("three: read the Cookie header", cookie_header, 200_000),
        ("three: choose with a valid cookie", lambda: balance.choose(three, cookie), 200_000),
        ("three: choose a new session (no cookie)", lambda: balance.choose(three, None),
         200_000),
        ("three: the upstream head for the chosen origin", moved, 200_000),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every call count (e.g. 0.01 for a smoke run)")
    args = parser.parse_args(argv)
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})
    rows = [(name, per_call(fn, max(1, int(n * args.scale)))) for name, fn, n in steps()]
    width = max(len(name) for name, _ in rows)
    for name, us in rows:
        print(f"{name.ljust(width)}  {us:8.2f} µs")


if __name__ == "__main__":
    main()
