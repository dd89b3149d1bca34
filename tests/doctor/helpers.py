"""Real misconfigured components for the doctor's test matrix (loopback only)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support import LOOPBACK, ServerProcess, free_port, wsgate_command

HERE = Path(__file__).resolve().parent
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
# Streamlit looks up the machine's external IP (an HTTP request to a public
# service) when it checks a foreign Origin; a dead loopback proxy makes that
# fail at once without any packet or DNS query leaving the machine.
NO_NETWORK_ENV = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
                  "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
                  "NO_PROXY": "", "no_proxy": ""}

GOOD_WS_LINES = """
    proxy_http_version 1.1;
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection "upgrade";
"""


def nginx_available() -> bool:
    return os.path.exists(NGINX)


@contextlib.contextmanager
def nginx(location: str, *, listen: str = LOOPBACK, server_extra: str = "",
          server_lines: str = "", http_lines: str = "") -> Iterator[int]:
    """nginx in the foreground with `location` as the body of `location /`; yields its port.
    `http_lines` go into the `http` block (an `upstream`, say)."""
    prefix = Path(tempfile.mkdtemp(prefix="wsgate-nginx-"))
    port = free_port(listen)
    host = f"[{listen}]" if ":" in listen else listen
    user = "user root;" if os.geteuid() == 0 else ""
    temp = "\n".join(f"{kind}_temp_path {prefix}/{kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = prefix / "nginx.conf"
    conf.write_text(textwrap.dedent(f"""
        {user}
        worker_processes 1;
        error_log {prefix}/error.log warn;
        pid {prefix}/nginx.pid;
        events {{ worker_connections 128; }}
        http {{
            access_log {prefix}/access.log;
            {temp}
            {http_lines}
            server {{
                listen {host}:{port} {server_extra};
                server_name _;
                {server_lines}
                location / {{
                    {location}
                }}
            }}
        }}
        """))
    server = ServerProcess([NGINX, "-c", str(conf), "-p", str(prefix), "-g", "daemon off;"],
                           port, host=listen)
    try:
        server.start(timeout=20)
        yield port
    finally:
        server.stop()
        shutil.rmtree(prefix, ignore_errors=True)


@contextlib.contextmanager
def streamlit_server(script: str, port: int, extra: tuple[str, ...] = (),
                     ) -> Iterator[ServerProcess]:
    """Plain Streamlit (no guard): the unprotected origin users start from."""
    workdir = Path(tempfile.mkdtemp(prefix="wsgate-st-"))
    (workdir / "app.py").write_text(script)
    args = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
            "--server.address", LOOPBACK, "--server.headless", "true",
            "--browser.gatherUsageStats", "false", *extra]
    server = ServerProcess(args, port, env=NO_NETWORK_ENV, cwd=str(workdir))
    try:
        with server:
            yield server
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def ws_origin(mode: str) -> ServerProcess:
    """A `websockets` server misbehaving as `mode` (see ws_origin.py)."""
    port = free_port()
    return ServerProcess([sys.executable, str(HERE / "ws_origin.py"), mode, str(port)], port)


def run_doctor(*args: str, env: dict[str, str] | None = None, timeout: float = 60,
               prefix: tuple[str, ...] = ()) -> tuple[int, dict[str, Any]]:
    """`wsgate doctor ARGS --json` as a user runs it; returns (exit code, report)."""
    result = subprocess.run(
        [*prefix, *wsgate_command("doctor", *args, "--json")],
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})})
    assert result.returncode in (0, 1), (result.returncode, result.stdout, result.stderr)
    report = json.loads(result.stdout)
    assert isinstance(report, dict)
    return result.returncode, report


def explain(report: dict[str, Any]) -> str:
    """The whole report, for assertion messages."""
    return json.dumps(report, indent=1)


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["status"] for c in report["checks"]}


def diagnosis_ids(report: dict[str, Any]) -> list[str]:
    return [d["id"] for d in report["diagnoses"]]


def diagnosis(report: dict[str, Any], diagnosis_id: str) -> dict[str, Any]:
    found = [d for d in report["diagnoses"] if d["id"] == diagnosis_id]
    assert found, f"no {diagnosis_id} in {json.dumps(report, indent=1)}"
    result: dict[str, Any] = found[0]
    return result
