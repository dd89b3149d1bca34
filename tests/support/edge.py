"""`wsgate edge` as every test runs it: a real subprocess started through the CLI.

One way in: `edge_process(...)` returns an unstarted `Edge` (a `ServerProcess`);
start it with `with edge_process(...) as edge:`, `started(edge_process(...))` or
`.start()`. The edge always gets `--listen` on a free loopback port and
`--log-file`; `origin` becomes `--origin` (one catch-all route `*/*`), while
`settings` and `routes` go into a TOML file passed with `--config` (flags win over
the file, as for users).
"""

from __future__ import annotations

import json
import re
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.process import LOOPBACK, REPO, ServerProcess, free_port, wsgate_command
from tests.support.wire import raw_exchange

# Fixed (other processes, such as a guarded origin, must share it), long and
# greppable: any appearance in a response or a log line is a leak.
SECRET = "wsgsecret-3f9c1e7a52d84b06a1c9e2f75d0b8a4e"
SECRET_HEADER = "X-CF-Secret"


@dataclass
class Edge(ServerProcess):
    """A `wsgate edge` subprocess with its JSON event file."""

    secret: str = SECRET
    log_file: Path = field(default_factory=lambda: Path(tempfile.mkstemp(suffix=".jsonl")[1]))
    admin_port: int = 0  # 0: no admin listener

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def events_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.events_text().splitlines() if line.strip()]

    def wait_event(self, predicate: Callable[[dict[str, Any]], bool],
                   timeout: float = 5.0) -> dict[str, Any]:
        """The first log event matching `predicate`, waiting for it to be written."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events():
                if predicate(event):
                    return event
            time.sleep(0.02)
        raise AssertionError(f"no matching event in {self.log_file}: {self.events()[-3:]}")

    def all_output(self) -> str:
        """Every line the edge wrote: JSON events and its stderr/stdout."""
        return self.events_text() + "\n" + self.output()

    def metric(self, name: str) -> float:
        """The value of an unlabelled sample on the admin listener's /metrics."""
        assert self.admin_port, "started without admin=True"
        url = f"http://{self.host}:{self.admin_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
        assert match, f"{name} not in /metrics"
        return float(match.group(1))

    def raw(self, data: bytes, timeout: float = 5.0) -> bytes:
        """Send bytes, read until the edge closes (or `timeout`)."""
        return raw_exchange(self.port, data, timeout)


def edge_process(origin: str | None, log_file: Path | None = None, *,
                 extra: Sequence[str] = (), settings: Mapping[str, Any] | None = None,
                 routes: Sequence[tuple[str, str]] = (), secret: str = SECRET,
                 admin: bool = True, env: Mapping[str, str] | None = None) -> Edge:
    """An unstarted edge for `origin` (or for `routes`: (pattern, origin URL) pairs).

    `settings` holds TOML top-level keys and section tables, e.g.
    {"limits": {"max_body_bytes": 1024}}; `extra` holds further CLI flags;
    `admin` adds `--admin-listen` on a free port (`Edge.admin_port`).
    """
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="wsgate-edge-"))
    log_file = log_file or workdir / "edge-events.jsonl"
    args = ["edge", "--listen", f"{LOOPBACK}:{port}", "--log-file", str(log_file)]
    if origin is not None:
        args += ["--origin", origin]
    admin_port = free_port() if admin else 0
    if admin:
        args += ["--admin-listen", f"{LOOPBACK}:{admin_port}"]
    if settings or routes:
        config = workdir / "edge.toml"
        config.write_text(config_toml(settings or {}, routes))
        args += ["--config", str(config)]
    return Edge(wsgate_command(*args, *extra), port, {"WSGATE_SECRET": secret, **(env or {})},
                str(REPO), secret=secret, log_file=log_file, admin_port=admin_port)


def config_toml(settings: Mapping[str, Any], routes: Sequence[tuple[str, str]] = ()) -> str:
    """An edge TOML config: top-level keys, then section tables, then [[routes]]."""
    top: list[str] = []
    tables: list[str] = []
    for key, value in settings.items():
        if isinstance(value, Mapping):
            tables.append(f"[{key}]")
            tables += [f"{k} = {_toml_value(v)}" for k, v in value.items()]
        else:
            top.append(f"{key} = {_toml_value(value)}")
    for pattern, origin in routes:
        tables += ["[[routes]]", f"pattern = {_toml_value(pattern)}",
                   f"origin = {_toml_value(origin)}"]
    return "\n".join(top + tables) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")
