"""The things the benchmark points its clients at, each started and stopped by PID.

- direct: the origin itself (the physical limit; the client sends the secret).
- nginx / nginx-64k: Debian's nginx doing the edge's job (Upgrade/Connection,
  the secret header, forwarded headers, request id, marker and cache headers,
  one worker, upstream keepalive, access log to a file), with default proxy
  buffers and with `proxy_buffer_size 64k; proxy_buffers 8 64k;`.
- wsgate: `python -m wsgate edge` with every policy on, logging to a file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

LOOPBACK = "127.0.0.1"
SECRET_HEADER = "X-CF-Secret"
BENCH = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout:.0f}s")


def pinned(cpu: int | None, argv: list[str]) -> list[str]:
    return argv if cpu is None else ["taskset", "-c", str(cpu), *argv]


@dataclass
class Process:
    """A server in its own session, output to a file, stopped by its PID's group."""

    name: str
    argv: list[str]
    port: int
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, env={**os.environ, **self.env},
                                         stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_for_port(self.port, self.proc, timeout)
        except RuntimeError as exc:
            self.stop()
            tail = self.log.read_text(errors="replace")[-1500:]
            raise RuntimeError(f"{self.name} did not start: {exc}\n{tail}") from exc

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout)


@dataclass
class Target:
    name: str
    port: int
    process: Process | None  # None for direct: no proxy to measure
    client_headers: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid


# The bench origin answers on each: `wsgate-3` addresses them as three origins.
ORIGIN_HOSTS: Final = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


def origin_process(workdir: Path, secret: str, cpu: int | None) -> Process:
    port = free_port()
    argv = pinned(cpu, [sys.executable, str(BENCH / "origin.py"), "--port", str(port),
                        "--host", ",".join(ORIGIN_HOSTS), "--secret-header", SECRET_HEADER])
    return Process("origin", argv, port, workdir / "origin.log", {"WSGATE_SECRET": secret})


NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_rlimit_nofile 20000;
{user}
events {{ worker_connections 16384; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    # Empty Connection for plain requests keeps the upstream connection alive.
    map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
    upstream origin {{ server 127.0.0.1:{origin_port}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header {secret_header} "{secret}";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Request-Id $request_id;
            proxy_hide_header X-Cloud-Trace-Context;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
            add_header X-Worker-Proxy Active always;
            {buffers}
            location ~* \\.(js|css|png|jpg|jpeg|gif|svg|woff|woff2|ico)$ {{
                proxy_pass http://origin;
                add_header X-Worker-Proxy Active always;
                add_header Cache-Control "public, max-age=86400";
            }}
        }}
    }}
}}
"""


def nginx_target(name: str, workdir: Path, origin_port: int, secret: str, big_buffers: bool,
                 cpu: int | None) -> Target:
    nginx = shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin") or "nginx"
    d = workdir / name
    d.mkdir(parents=True, exist_ok=True)
    port = free_port()
    user = "user root root;" if os.geteuid() == 0 else ""  # workers must write into {dir}
    conf = NGINX_CONF.format(
        dir=d, user=user, origin_port=origin_port, port=port, secret_header=SECRET_HEADER,
        secret=secret,
        buffers="proxy_buffer_size 64k; proxy_buffers 8 64k;" if big_buffers else "")
    (d / "nginx.conf").write_text(conf)
    argv = pinned(cpu, [nginx, "-p", str(d), "-c", str(d / "nginx.conf"),
                        "-e", str(d / "error.log")])
    return Target(name, port, Process(name, argv, port, d / "stdout.log"))


def wsgate_target(workdir: Path, origin_port: int, secret: str, cpu: int | None,
                  extra_args: list[str]) -> Target:
    port = free_port()
    d = workdir / "wsgate"
    d.mkdir(parents=True, exist_ok=True)
    # Every policy on: secret, forwarded headers (proto https), marker and cache
    # headers (the edge's defaults), request ids, JSON events to a file, metrics.
    argv = pinned(cpu, [sys.executable, "-m", "wsgate", "edge",
                        "--origin", f"http://127.0.0.1:{origin_port}",
                        "--listen", f"127.0.0.1:{port}", "--log-file", str(d / "events.jsonl"),
                        "--forwarded-proto", "https",
                        "--admin-listen", f"127.0.0.1:{free_port()}", *extra_args])
    return Target("wsgate", port, Process("wsgate", argv, port, d / "stderr.log",
                                          {"WSGATE_SECRET": secret}))


THREE_ORIGINS_TOML = """\
listen = "127.0.0.1:{port}"
log_file = "{log}"
forwarded_proto = "https"
admin_listen = "127.0.0.1:{admin}"

[[routes]]
pattern = "*/*"
origins = [{origins}]

[health]
path = "/static/x.js"  # what the bench origin answers with 200
"""


def wsgate_three_origins_target(workdir: Path, origin_port: int, secret: str,
                                cpu: int | None, extra_args: list[str]) -> Target:
    """`wsgate edge` with one route over three origins (affinity cookie, least-loaded
    choice, health checks). The three are the one bench origin process on three
    loopback addresses (`ORIGIN_HOSTS`), so the client and the origin do exactly the
    work they do for `wsgate`: the difference between the two targets is the edge's."""
    port = free_port()
    d = workdir / "wsgate-3"
    d.mkdir(parents=True, exist_ok=True)
    origins = ", ".join(f'"http://{host}:{origin_port}"' for host in ORIGIN_HOSTS)
    (d / "edge.toml").write_text(THREE_ORIGINS_TOML.format(
        port=port, log=d / "events.jsonl", admin=free_port(), origins=origins))
    argv = pinned(cpu, [sys.executable, "-m", "wsgate", "edge", "--config", str(d / "edge.toml"),
                        *extra_args])
    return Target("wsgate-3", port, Process("wsgate-3", argv, port, d / "stderr.log",
                                            {"WSGATE_SECRET": secret}))


def direct_target(origin_port: int, secret: str) -> Target:
    return Target("direct", origin_port, None, {SECRET_HEADER: secret})
