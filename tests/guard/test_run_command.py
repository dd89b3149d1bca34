"""`wsgate run` launches like `streamlit run`: config.toml, STREAMLIT_* variables,
st.App launchers, --public-url, --insecure-no-secret, and one-line errors."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.guard.fixtures import (
    APPS,
    SECRET_HEADER,
    SHOW_CONTEXT_APP,
    GuardedStreamlit,
    http_get,
    start_guarded_streamlit,
)
from tests.support import LOOPBACK, free_port, wait_until, wsgate_command
from wsgate.doctor.streamlit_session import run_session

pytestmark = [pytest.mark.streamlit, pytest.mark.slow]
PUBLIC_URL = "https://app.example.com"


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuardedStreamlit]:
    """baseUrlPath from .streamlit/config.toml in the working directory, address and
    port from STREAMLIT_* variables, and --public-url."""
    cwd = tmp_path_factory.mktemp("project")
    (cwd / ".streamlit").mkdir()
    (cwd / ".streamlit" / "config.toml").write_text('[server]\nbaseUrlPath = "app"\n')
    with start_guarded_streamlit(cwd=str(cwd), base_path="app", address_by_env=True,
                                 run_args=["--public-url", PUBLIC_URL]) as guarded:
        yield guarded


def test_config_toml_and_environment_are_honoured(configured: GuardedStreamlit) -> None:
    # Listening on the STREAMLIT_SERVER_PORT/ADDRESS port proves the variables applied;
    # the health path under /app proves config.toml did.
    assert http_get(configured.url("/_stcore/health"))[0] == 200
    root = f"http://{LOOPBACK}:{configured.port}"
    assert http_get(root + "/_stcore/health")[0] == 403  # open path is under baseUrlPath
    result = asyncio.run(run_session(configured.ws_url, headers=configured.secret_headers,
                                     timeout=30))
    assert result.ok, result


def test_console_names_the_public_url_not_the_origin(configured: GuardedStreamlit) -> None:
    # Streamlit's own banner would invite users to open the origin, which answers 403.
    output = configured.server.output()
    assert "You can now view your Streamlit app" not in output
    assert (f"wsgate run: origin listening on http://{LOOPBACK}:{configured.port}/app "
            f"(guarded: answers 403 without the secret; open the app at {PUBLIC_URL})"
            ) in output


def test_refusal_names_the_public_url(configured: GuardedStreamlit) -> None:
    status, body, _ = http_get(configured.url("/"))
    assert status == 403 and PUBLIC_URL in body


def test_public_origin_with_rewritten_host_connects(configured: GuardedStreamlit) -> None:
    # What a browser sends through an edge that rewrites Host to the origin's own.
    good = asyncio.run(run_session(configured.ws_url, headers=configured.secret_headers,
                                   origin=PUBLIC_URL, timeout=30))
    assert good.ok, good
    # Streamlit's own Origin check is still on: an unrelated origin is refused by it.
    bad = asyncio.run(run_session(configured.ws_url, headers=configured.secret_headers,
                                  origin="https://evil.example.net", timeout=30))
    assert (bad.ok, bad.status) == (False, 403)
    assert "Direct access refused" not in bad.refusal_body  # Streamlit refused, not the guard


def test_unrelated_origin_refused_without_public_url() -> None:
    # Control: the public origin itself is refused when --public-url is not given.
    # Also --no-access-log: nothing is logged for requests that pass, refusals still are.
    with start_guarded_streamlit(run_args=["--no-access-log"]) as plain:
        result = asyncio.run(run_session(plain.ws_url, headers=plain.secret_headers,
                                         origin=PUBLIC_URL, timeout=30))
        assert result.status == 403
        assert http_get(plain.url("/"), plain.secret_headers)[0] == 200
        assert http_get(plain.url("/"), {"X-Request-Id": "quiet-refused"})[0] == 403
        assert wait_until(lambda: any(e.get("requestId") == "quiet-refused"
                                      for e in plain.events()), timeout=10)
        assert [e for e in plain.events()
                if e.get("message") in ("request", "websocket session")] == []


def test_st_app_launcher_is_guarded_outermost() -> None:
    with start_guarded_streamlit(APPS / "app_launcher.py") as launched:
        status, _, headers = http_get(launched.url("/"))
        assert status == 403 and "x-user-middleware" not in headers
        status, _, headers = http_get(launched.url("/"), launched.secret_headers)
        assert status == 200 and headers.get("x-user-middleware") == "ran"
        assert asyncio.run(run_session(launched.ws_url, timeout=30)).status == 403
        result = asyncio.run(run_session(launched.ws_url, headers=launched.secret_headers,
                                         timeout=30))
        assert result.ok, result
        assert "app rendered" in result.texts


def test_insecure_no_secret_warns_and_trusts_nothing() -> None:
    with start_guarded_streamlit(secrets=[], run_args=["--insecure-no-secret"]) as open_app:
        result = asyncio.run(run_session(open_app.ws_url, timeout=30, headers={
            "X-Forwarded-For": "203.0.113.50", SECRET_HEADER: "whatever"}))
        assert result.ok, result
        assert 'ip_address=null' in result.texts  # the forwarded address is not trusted
        headers = next(t for t in result.texts if t.startswith("headers="))
        assert SECRET_HEADER.lower() not in headers.lower()  # still stripped
        assert "guard is OFF" in open_app.server.output()


def run_cli(*args: str, env: dict[str, str] | None = None,
            cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("WSGATE_")}
    full_env.update(env or {})
    return subprocess.run(wsgate_command("run", *args), capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=120)


def test_missing_script_is_one_line() -> None:
    done = run_cli("does-not-exist.py", env={"WSGATE_SECRET": "x" * 20})
    assert done.returncode == 2
    assert done.stderr.strip() == "wsgate run: script not found: does-not-exist.py"


def test_forgotten_script_is_named_missing() -> None:
    done = run_cli("--server.port", "8613", env={"WSGATE_SECRET": "x" * 20})
    assert done.returncode == 2
    assert done.stderr.strip() == ("wsgate run: the script is missing: give it first, "
                                   "e.g. wsgate run app.py --server.port 8613")


def test_no_secret_refuses_to_start() -> None:
    done = run_cli(str(SHOW_CONTEXT_APP))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "no secret configured" in done.stderr
    assert "$WSGATE_SECRET is not set" in done.stderr
    assert "--insecure-no-secret" in done.stderr


@pytest.mark.parametrize("value", ["", " , "])
def test_empty_secret_is_called_empty(value: str) -> None:
    done = run_cli(str(SHOW_CONTEXT_APP), "--secret-env", "CLOUDFLARE_WORKER_SECRET",
                   env={"CLOUDFLARE_WORKER_SECRET": value})
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "$CLOUDFLARE_WORKER_SECRET is empty" in done.stderr
    assert "not set" not in done.stderr


def test_original_variable_name_works(tmp_path: Path) -> None:
    # CLOUDFLARE_WORKER_SECRET via --secret-env; the start fails later only because
    # the port is taken, which proves the secret was accepted.
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli(str(SHOW_CONTEXT_APP), "--secret-env", "CLOUDFLARE_WORKER_SECRET",
                       "--server.port", str(port), "--server.address", LOOPBACK,
                       "--server.headless", "true",
                       env={"CLOUDFLARE_WORKER_SECRET": "cf-worker-secret-0123456789"})
    assert done.returncode == 1
    assert "$CLOUDFLARE_WORKER_SECRET" in done.stderr
    assert f"wsgate run: port {port} on {LOOPBACK} is already in use" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "cf-worker-secret-0123456789" not in done.stderr + done.stdout


def test_bad_public_url_is_one_line() -> None:
    done = run_cli(str(SHOW_CONTEXT_APP), "--public-url", "app.example.com",
                   env={"WSGATE_SECRET": "x" * 20})
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "--public-url" in done.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_stops_on_a_signal_after_its_stdout_pipe_closed(signum: int) -> None:
    # `wsgate run app.py | tee origin.log`, then Ctrl-C: the terminal's SIGINT ends
    # tee too, so the origin's stdout is a pipe without a reader when it stops.
    port = free_port()
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            wsgate_command("run", str(SHOW_CONTEXT_APP), "--server.port", str(port),
                           "--server.address", LOOPBACK, "--server.headless", "true"),
            stdout=subprocess.PIPE, stderr=stderr, start_new_session=True,
            env={**os.environ, "WSGATE_SECRET": "pipe-test-secret-0123456789"})

        def up_or_exited() -> bool:
            if process.poll() is not None:
                return True
            try:
                return http_get(f"http://{LOOPBACK}:{port}/_stcore/health",
                                timeout=2)[0] == 200
            except OSError:
                return False

        try:
            assert wait_until(up_or_exited, timeout=90)
            assert process.poll() is None
            assert process.stdout is not None
            process.stdout.close()  # tee is gone
            process.send_signal(signum)
            code = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        stderr.seek(0)
        errors = stderr.read().decode(errors="replace")
    assert code == 0, errors
    assert "Traceback" not in errors and "Logging error" not in errors
    with pytest.raises(OSError), socket.create_connection((LOOPBACK, port), timeout=2):
        pass
