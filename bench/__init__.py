"""The benchmark harness: wsgate edge against Debian nginx and direct, on loopback.

Entry points (each also runs as `python bench/NAME.py`):
`python -m bench.run` (the comparison, see docs/performance.md), `bench.micro` (µs per
call of the edge's hot-path functions), `bench.soak` (growth under steady load),
`bench.syscalls`, `bench.profile_edge`, `bench.logs_bench`. Shared parts: `targets`
(the processes measured), `origin` (the lean origin), `wsclient` (cheap clients),
`procstat` (/proc readers).
"""
