"""Start a real `wsgate edge` process for the hardening tests.

The edge gets a distinctive random secret (so a leak is unmistakable in any byte
the tests see) and writes its JSON events to a file the tests scan afterwards.
"""

from __future__ import annotations

import contextlib
import secrets
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import ServerProcess, free_port, wsgate_command

SECRET_HEADER = "X-CF-Secret"


def new_secret() -> str:
    # Long, random and greppable: any appearance in a response or log is a leak.
    return "wsgsecret" + secrets.token_hex(20)


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


def edge_toml(origin: str, listen: str, log_file: str,
              settings: Mapping[str, Any] | None = None) -> str:
    """A config with one catch-all route; `settings` holds top-level keys and
    section tables such as {"limits": {"max_body_bytes": 1024}}."""
    top: list[str] = [f"listen = {_toml_value(listen)}", f"log_file = {_toml_value(log_file)}"]
    tables: list[str] = []
    for key, value in (settings or {}).items():
        if isinstance(value, Mapping):
            tables.append(f"[{key}]")
            tables += [f"{k} = {_toml_value(v)}" for k, v in value.items()]
        else:
            top.append(f"{key} = {_toml_value(value)}")
    routes = ["[[routes]]", 'pattern = "*/*"', f"origin = {_toml_value(origin)}"]
    return "\n".join(top + tables + routes) + "\n"


@dataclass
class Edge:
    server: ServerProcess
    port: int
    secret: str
    log_file: Path
    admin_port: int | None = None

    @property
    def pid(self) -> int:
        assert self.server.process is not None
        return self.server.process.pid

    def alive(self) -> bool:
        return self.server.process is not None and self.server.process.poll() is None

    def events_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def all_output(self) -> str:
        """Every line the edge wrote: JSON events and its stderr/stdout."""
        return self.events_text() + "\n" + self.server.output()


@contextlib.contextmanager
def run_edge(origin: str, settings: Mapping[str, Any] | None = None, *,
             secret: str | None = None, admin: bool = False,
             env: Mapping[str, str] | None = None, timeout: float = 60.0) -> Iterator[Edge]:
    secret = secret or new_secret()
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="wsgate-hostile-"))
    log_file = workdir / "edge-events.jsonl"
    merged = dict(settings or {})
    admin_port = None
    if admin:
        admin_port = free_port()
        merged["admin_listen"] = f"127.0.0.1:{admin_port}"
    config = workdir / "edge.toml"
    config.write_text(edge_toml(origin, f"127.0.0.1:{port}", str(log_file), merged))
    server = ServerProcess(wsgate_command("edge", "--config", str(config)), port,
                           {"WSGATE_SECRET": secret, **(env or {})})
    server.start(timeout)
    try:
        yield Edge(server, port, secret, log_file, admin_port)
    finally:
        server.stop()
