"""Reusable fixtures: a real `wsgate run` (Streamlit behind OriginGuard) on loopback.

Use in another test module:

    from tests.guard.fixtures import guarded_streamlit  # noqa: F401 (pytest fixture)

    def test_x(guarded_streamlit):
        session = asyncio.run(run_session(guarded_streamlit.ws_url,
                                          headers=guarded_streamlit.secret_headers))

or start one yourself with `start_guarded_streamlit(...)` (a context manager).
The default app is tests/streamlit_apps/show_context.py, which prints
`ip_address=<json>` and `headers=<json [[name, value], ...]>` as text elements.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import LOOPBACK, REPO, ServerProcess, free_port, wsgate_command

APPS = REPO / "tests" / "streamlit_apps"
SHOW_CONTEXT_APP = APPS / "show_context.py"
SECRET_HEADER = "X-CF-Secret"
# Two secrets: the rotation case (old and new both accepted).
SECRETS = ("guard-test-secret-new-0123456789", "guard-test-secret-old-9876543210")
STARTUP_TIMEOUT = 90.0  # Streamlit may need 10+ s on a loaded 2-core machine


@dataclass
class GuardedStreamlit:
    server: ServerProcess
    port: int
    secrets: tuple[str, ...]
    log_file: Path
    base_path: str = ""
    secret_header: str = SECRET_HEADER
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}" + (f"/{self.base_path}" if self.base_path else "")

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://", 1) + "/_stcore/stream"

    @property
    def secret_headers(self) -> dict[str, str]:
        return {self.secret_header: self.secrets[0]}

    def url(self, path: str) -> str:
        return self.base_url + path

    def events(self) -> list[dict[str, Any]]:
        """The guard's JSON log events written so far."""
        if not self.log_file.exists():
            return []
        out = []
        for line in self.log_file.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out


def http_get(url: str, headers: Mapping[str, str] | None = None, method: str = "GET",
             data: bytes | None = None, timeout: float = 15.0) -> tuple[int, str, dict[str, str]]:
    """(status, body text, headers) without raising on 4xx/5xx."""
    request = urllib.request.Request(url, headers=dict(headers or {}), method=method, data=data)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return (response.status, response.read().decode("utf-8", "replace"),
                    {k.lower(): v for k, v in response.headers.items()})
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace"), \
            {k.lower(): v for k, v in exc.headers.items()}


def wait_healthy(url: str, timeout: float = STARTUP_TIMEOUT,
                 server: ServerProcess | None = None) -> None:
    """Poll a health URL until 200 (bounded in time and count)."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.1) + 1):
        if server is not None and server.process is not None and \
                server.process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.output()}")
        with contextlib.suppress(OSError):
            if http_get(url, timeout=2.0)[0] == 200:
                return
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    raise TimeoutError(f"{url} not healthy after {timeout}s")


@contextlib.contextmanager
def start_guarded_streamlit(
    app: Path = SHOW_CONTEXT_APP,
    *,
    secrets: Sequence[str] = SECRETS,
    run_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    base_path: str = "",
    port: int | None = None,
    address_by_env: bool = False,
) -> Iterator[GuardedStreamlit]:
    """`wsgate run APP` on a free loopback port; secrets in $WSGATE_SECRET."""
    port = port or free_port()
    log_file = Path(tempfile.mkstemp(prefix="wsgate-guard-", suffix=".jsonl")[1])
    full_env = {"WSGATE_SECRET": ",".join(secrets),
                "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
                "STREAMLIT_SERVER_HEADLESS": "true", **(env or {})}
    if address_by_env:  # prove STREAMLIT_* variables reach Streamlit
        full_env.update({"STREAMLIT_SERVER_ADDRESS": LOOPBACK,
                         "STREAMLIT_SERVER_PORT": str(port)})
        where: list[str] = []
    else:
        where = ["--server.address", LOOPBACK, "--server.port", str(port)]
    # A high burst so every refusal in a test module is logged one by one.
    args = wsgate_command("run", str(app), "--log-file", str(log_file),
                          "--refusal-burst", "100000", *run_args, *where)
    server = ServerProcess(args, port, full_env, cwd)
    server.start(STARTUP_TIMEOUT)
    guarded = GuardedStreamlit(server, port, tuple(secrets), log_file, base_path)
    try:
        wait_healthy(guarded.url("/_stcore/health"), server=server)
        yield guarded
    finally:
        server.stop()
        log_file.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def guarded_streamlit() -> Iterator[GuardedStreamlit]:
    """The show-context app behind the guard, two secrets (SECRETS), per module."""
    with start_guarded_streamlit() as guarded:
        yield guarded
