"""Real server processes for tests: free loopback ports, start, wait, stop.

Every process started here is stopped by PID (its whole process group) when the
context exits, so no test leaves servers behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

LOOPBACK = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, host: str = LOOPBACK, timeout: float = 30.0,
                  process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def wait_until(condition: Callable[[], object], timeout: float = 10.0,
               interval: float = 0.05) -> bool:
    """Polls `condition()` until true or `timeout` seconds passed; checked at least once
    and once more at the deadline (for asynchronous bookkeeping: logs, counters, fds)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


@dataclass
class ServerProcess:
    """A real server in a subprocess, its output in `log_path`."""

    args: Sequence[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    host: str = LOOPBACK
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=lambda: Path(tempfile.mkstemp(suffix=".log")[1]))

    def start(self, timeout: float = 60.0) -> ServerProcess:
        env = {**os.environ, **self.env}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                list(self.args), env=env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        try:
            wait_for_port(self.port, self.host, timeout, self.process)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"{self.args!r} did not start: {exc}\n{self.output()}") from exc
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(timeout)

    def __enter__(self) -> ServerProcess:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wsgate_command(*args: str) -> list[str]:
    """`wsgate ARGS` run with this interpreter, so tests never depend on PATH."""
    return [sys.executable, "-m", "wsgate", *args]


S = TypeVar("S", bound=ServerProcess)


@contextlib.contextmanager
def started(server: S, timeout: float = 60.0) -> Iterator[S]:
    """`server` started for the block (waiting up to `timeout` for its port), then stopped."""
    server.start(timeout)
    try:
        yield server
    finally:
        server.stop()


def running(args: Sequence[str], port: int, env: dict[str, str] | None = None,
            timeout: float = 60.0, cwd: str | None = None
            ) -> contextlib.AbstractContextManager[ServerProcess]:
    """Any server command (not the edge: use `edge_process`) for the block."""
    return started(ServerProcess(args, port, env or {}, cwd), timeout)


IP = shutil.which("ip")


def ip_command(*args: str) -> subprocess.CompletedProcess[str]:
    assert IP is not None
    return subprocess.run([IP, *args], capture_output=True, text=True, timeout=10)


@contextlib.contextmanager
def private_network_namespace(prefix: str) -> Iterator[str]:
    """A network namespace of the test's own, loopback up, deleted afterwards.

    Skips (with the reason) where namespaces cannot be made: not root, no iproute2.
    Traffic inside it never reaches this machine's real interfaces.
    """
    import pytest

    if IP is None or os.geteuid() != 0:
        pytest.skip("needs root and iproute2 to create a network namespace")
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    if ip_command("netns", "add", name).returncode != 0:
        pytest.skip("cannot create a network namespace here")
    try:
        result = ip_command("netns", "exec", name, "ip", "link", "set", "lo", "up")
        assert result.returncode == 0, result.stderr
        yield name
    finally:
        ip_command("netns", "del", name)
