"""Start and stop the demo's processes: the guarded origin and the edge in front of it.

Pure parts first (the plan, the commands, the verdict), then the I/O: processes,
readiness probes and the doctor. Every child runs in its own process group, so
a terminal's Ctrl-C reaches only `wsgate demo`, which then stops the children in
order (edge first, then origin) and kills whatever is left of each group.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.resources
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from wsgate.i18n import N_, _

LOOPBACK: Final = "127.0.0.1"
SECRET_ENV: Final = "WSGATE_SECRET"  # noqa: S105 (a variable name, not a secret)
HEALTH_PATH: Final = "/_stcore/health"
STREAM_PATH: Final = "/_stcore/stream"


def bundled_app() -> Path:
    """The sample app's path inside the installed package (it ships as a module)."""
    resource = importlib.resources.files("wsgate.demo").joinpath("app.py")
    return Path(str(resource))


def new_secret() -> str:
    """A fresh 256-bit secret; it lives only in this process and its children's env."""
    return secrets.token_urlsafe(32)


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True)
class DemoPlan:
    """Where everything listens and how each process is started."""

    app: Path
    origin_port: int
    edge_port: int
    log_dir: Path
    host: str = LOOPBACK
    python: str = sys.executable

    @property
    def origin_url(self) -> str:
        return f"http://{self.host}:{self.origin_port}"

    @property
    def public_url(self) -> str:
        return f"http://{self.host}:{self.edge_port}"

    @property
    def edge_log(self) -> Path:
        return self.log_dir / "edge.jsonl"

    @property
    def origin_log(self) -> Path:
        return self.log_dir / "origin.jsonl"

    def origin_command(self) -> list[str]:
        return [
            self.python, "-m", "wsgate", "run", str(self.app),
            "--secret-env", SECRET_ENV,
            # The edge keeps the browser's Origin (the public URL) but sends the
            # origin's Host: Streamlit's Origin check must know the public URL.
            "--public-url", self.public_url,
            "--log-file", str(self.origin_log),
            "--server.port", str(self.origin_port),
            "--server.address", self.host,
            "--server.headless", "true",
            # No usage statistics from the demo's browser tab, no "Deploy" button.
            "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "minimal",
        ]

    def edge_command(self) -> list[str]:
        return [
            self.python, "-m", "wsgate", "edge",
            "--origin", self.origin_url,
            "--listen", f"{self.host}:{self.edge_port}",
            "--secret-env", SECRET_ENV,
            # Browsers speak plain http to the demo's edge (the default is https).
            "--forwarded-proto", "http",
            "--log-file", str(self.edge_log),
        ]

    def doctor_command(self, url: str, *, through_edge: bool) -> list[str]:
        # A generous step timeout: a loaded machine's first Streamlit run can be slow,
        # and a healthy loopback stack answers long before it anyway.
        command = [self.python, "-m", "wsgate", "doctor", url, "--json", "--timeout", "10"]
        if through_edge:
            # Also probe the origin directly: refused without the secret, fine with it.
            command += ["--origin", self.origin_url, "--secret-env", SECRET_ENV]
        return command


# ---------------------------------------------------------------------------
# Verdict (pure)


@dataclass(frozen=True, slots=True)
class Refusal:
    """What the origin answered to a client that has no secret."""

    http_status: int | None
    upgrade_status: int | None
    error: str | None = None

    @property
    def refused(self) -> bool:
        return self.http_status == 403 and self.upgrade_status == 403


@dataclass(frozen=True, slots=True)
class DoctorRun:
    """One `wsgate doctor --json` run: its report, or why there is none."""

    url: str
    exit_code: int | None
    report: Mapping[str, Any] | None
    error: str | None = None
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.report is not None and self.report.get("ok") is True

    def diagnosis_ids(self) -> list[str]:
        if self.report is None:
            return []
        return [str(d.get("id", "?")) for d in self.report.get("diagnoses", [])
                if isinstance(d, Mapping)]


def verdict(edge: DoctorRun, refusal: Refusal, origin: DoctorRun | None = None) -> list[str]:
    """Why the demo is not healthy, one line per reason; empty means healthy."""
    problems: list[str] = []
    if edge.report is None:
        problems.append(_("doctor through the edge did not report: {error}").format(
            error=edge.error or _("no output")))
    elif not edge.ok:
        ids = ", ".join(edge.diagnosis_ids()) or _("no diagnosis given")
        problems.append(_("doctor through the edge reports a fault: {ids}").format(ids=ids))
    if refusal.error is not None:
        problems.append(_("origin probe failed: {error}").format(error=refusal.error))
    elif not refusal.refused:
        problems.append(_(
            "origin did not refuse a client without the secret (HTTP {page}, upgrade "
            "{upgrade}; expected 403, 403)").format(page=refusal.http_status,
                                                    upgrade=refusal.upgrade_status))
    if origin is not None and "origin-bypass" in origin.diagnosis_ids():
        problems.append(_("doctor on the origin directly reports origin-bypass"))
    return problems


def parse_doctor_output(url: str, exit_code: int, stdout: str, stderr: str,
                        elapsed_s: float) -> DoctorRun:
    """Read `wsgate doctor --json` output; any other output is an error, not a crash."""
    text = stdout.strip()
    try:
        report = json.loads(text) if text else None
    except json.JSONDecodeError:
        report = None
    if not isinstance(report, dict):
        last = (stderr.strip() or text or _("no output")).splitlines()[-1]
        return DoctorRun(url, exit_code, None,
                         _("exit {code}: {line}").format(code=exit_code, line=last), elapsed_s)
    return DoctorRun(url, exit_code, report, None, elapsed_s)


# ---------------------------------------------------------------------------
# Processes


class StartupError(RuntimeError):
    """A child did not come up: the message says which and why, `output` holds its
    last lines (where the real cause is, e.g. "address already in use")."""

    def __init__(self, message: str, child: str = "", output: str = "") -> None:
        super().__init__(message)
        self.child = child
        self.output = output


# What `wsgate run` and `wsgate edge` print once their listening socket is bound.
_LISTENING = re.compile(r"listening on [a-z]+://(\[[^\]\s]+\]|[^\s:/\[\]]+):(\d+)")


def reported_listening(output: str) -> set[tuple[str, int]]:
    """The (host, port) pairs a child's output says it listens on (pure)."""
    return {(host.strip("[]"), int(port)) for host, port in _LISTENING.findall(output)}


def read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def tail(path: Path, lines: int = 15) -> str:
    return "\n".join(read_text(path).splitlines()[-lines:])


@dataclass
class Child:
    """One process started by the demo, alone in its own process group."""

    name: str
    command: Sequence[str]
    output: Path
    env: Mapping[str, str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = field(default_factory=time.monotonic)

    def start(self) -> Child:
        self.output.parent.mkdir(parents=True, exist_ok=True)
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(
                list(self.command), env=dict(self.env), stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.started_at = time.monotonic()
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the group, wait, then SIGKILL anything left in it. Never raises."""
        if self.process is None:
            return None
        pgid = self.process.pid  # start_new_session: the group id is the leader's pid
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
                self.process.wait(timeout)
        # The leader is gone; anything it forked that is still in the group goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        return self.process.returncode


def http_status(url_host: str, port: int, path: str, headers: Mapping[str, str] | None = None,
                timeout: float = 3.0) -> int:
    conn = http.client.HTTPConnection(url_host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=dict(headers or {}))
        response = conn.getresponse()
        response.read(65536)
        return response.status
    finally:
        conn.close()


def wait_until_healthy(child: Child, host: str, port: int, deadline: float) -> float:
    """Wait until `child` itself serves `host:port`; returns seconds since it started.

    Another server already on that port also answers the health path, so a 200
    counts only once the child is alive *and* has reported binding that very port
    (the bind would have failed had the port been taken).
    """
    last_error = _("no answer yet")
    while time.monotonic() < deadline:
        if not child.alive():
            code = child.process.returncode if child.process else None
            raise StartupError(_("{name} exited with status {code} before it was ready").format(
                name=_(child.name), code=code),
                               child.name, tail(child.output))
        bound = (host, port) in reported_listening(read_text(child.output))
        if not bound:
            last_error = _("it has not reported listening on {host}:{port}").format(
                host=host, port=port)
        else:
            try:
                status = http_status(host, port, HEALTH_PATH, timeout=2.0)
                if status == 200:
                    return time.monotonic() - child.started_at
                last_error = _("{path} answered {status}").format(path=HEALTH_PATH, status=status)
            except OSError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
        time.sleep(0.1)
    raise StartupError(_("{name} was not ready in time ({why})").format(
        name=_(child.name), why=last_error),
                       child.name, tail(child.output))


def probe_refusal(host: str, port: int) -> Refusal:
    """Ask the origin for a page and for the stream, both without the secret."""
    upgrade = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Protocol": "streamlit",
    }
    try:
        return Refusal(http_status(host, port, "/"), http_status(host, port, STREAM_PATH, upgrade))
    except OSError as exc:
        return Refusal(None, None, f"{type(exc).__name__}: {exc}")


def run_doctor(command: Sequence[str], url: str, env: Mapping[str, str],
               timeout: float = 60.0) -> DoctorRun:
    started = time.monotonic()
    try:
        done = subprocess.run(list(command), env=dict(env), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return DoctorRun(url, None, None,
                         _("no answer in {seconds:.0f} s").format(seconds=timeout), timeout)
    return parse_doctor_output(url, done.returncode, done.stdout, done.stderr,
                               time.monotonic() - started)


@dataclass
class DemoStack:
    """The running demo. Use as a context manager: leaving it stops every child."""

    plan: DemoPlan
    secret: str = field(default_factory=new_secret)
    children: list[Child] = field(default_factory=list)

    def child_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
        env[SECRET_ENV] = self.secret
        # The children's JSON events must not wait in a pipe buffer.
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start_origin(self, deadline: float) -> float:
        child = Child(N_("origin (wsgate run)"), self.plan.origin_command(),
                      self.plan.log_dir / "origin.out", self.child_env()).start()
        self.children.append(child)
        return wait_until_healthy(child, self.plan.host, self.plan.origin_port, deadline)

    def start_edge(self, deadline: float) -> float:
        child = Child(N_("edge (wsgate edge)"), self.plan.edge_command(),
                      self.plan.log_dir / "edge.out", self.child_env()).start()
        self.children.append(child)
        return wait_until_healthy(child, self.plan.host, self.plan.edge_port, deadline)

    def doctor_through_edge(self) -> DoctorRun:
        url = self.plan.public_url
        return run_doctor(self.plan.doctor_command(url, through_edge=True), url, self.child_env())

    def doctor_on_origin(self) -> DoctorRun:
        url = self.plan.origin_url
        env = {k: v for k, v in self.child_env().items() if k != SECRET_ENV}
        return run_doctor(self.plan.doctor_command(url, through_edge=False), url, env)

    def probe_origin(self) -> Refusal:
        return probe_refusal(self.plan.host, self.plan.origin_port)

    def first_dead(self) -> Child | None:
        return next((c for c in self.children if not c.alive()), None)

    def stop(self) -> None:
        # Edge first, so no request is forwarded to an origin that is going away.
        for child in reversed(self.children):
            child.stop()

    def __enter__(self) -> DemoStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
