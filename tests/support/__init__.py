"""The test harness: real processes and servers on loopback, one of each.

- `process`: free ports, `ServerProcess` (any server command, stopped by process
  group), `started`/`running`, `wait_until`, network namespaces;
- `edge`: `edge_process(...)`, the one way tests start `wsgate edge` (through the CLI);
- `origin`: `RecordingOrigin`, the one recording origin (thread or process);
- `wire`: raw HTTP/1.1 and WebSocket bytes for clients that misbehave on purpose.
"""

from tests.support.edge import SECRET, SECRET_HEADER, Edge, edge_process
from tests.support.origin import RecordingOrigin, origin_and_edge, origin_process, origin_stats
from tests.support.process import (
    IP,
    LOOPBACK,
    REPO,
    ServerProcess,
    free_port,
    ip_command,
    private_network_namespace,
    running,
    started,
    wait_for_port,
    wait_until,
    wsgate_command,
)

__all__ = [
    "IP",
    "LOOPBACK",
    "REPO",
    "SECRET",
    "SECRET_HEADER",
    "Edge",
    "RecordingOrigin",
    "ServerProcess",
    "edge_process",
    "free_port",
    "ip_command",
    "origin_and_edge",
    "origin_process",
    "origin_stats",
    "private_network_namespace",
    "running",
    "started",
    "wait_for_port",
    "wait_until",
    "wsgate_command",
]
