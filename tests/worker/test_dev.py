"""`wsgate worker dev`: workerd's lifetime, its network, the secret's path, and the
one-line errors when something is missing."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import LOOPBACK, SECRET, RecordingOrigin, ServerProcess, free_port, wait_until
from tests.support.edge import config_toml
from tests.support.wire import exchange
from tests.worker.targets import target_process, workerd_binary
from wsgate.config import load_config
from wsgate.worker.build import write_worker
from wsgate.worker.workerd import WORKERD_VERSION, render_capnp

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def origin() -> Iterator[RecordingOrigin]:
    with RecordingOrigin() as recording:
        yield recording


def workerd_children(pid: int) -> list[int]:
    found = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"workerd" in cmdline:
            found.append(int(child))
    return found


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_stopping_wsgate_stops_workerd(origin: RecordingOrigin, signum: int) -> None:
    dev = target_process("worker", [("*/*", origin.url)]).start()
    try:
        assert dev.process is not None
        workerd = workerd_children(dev.process.pid)
        assert len(workerd) == 1, dev.output()
        dev.signal(signum)
        code = dev.process.wait(15)
        # SIGKILL cannot be handled: workerd learns it from the kernel (parent-death signal).
        assert wait_until(lambda: gone(workerd[0]), timeout=15), "workerd left behind"
        if signum != signal.SIGKILL:
            assert code == 0, dev.output()
            assert "wsgate worker dev: stopped" in dev.output()
    finally:
        dev.stop()


def test_outbound_network_is_only_what_the_config_allows(
        origin: RecordingOrigin, tmp_path: Path) -> None:
    # The same mechanism that limits `worker dev` to loopback, shown on loopback alone:
    # allowing only 127.0.0.2 makes the origin on 127.0.0.1 unreachable for fetch().
    port = free_port()
    config = load_config(None, {"origin": origin.url, "listen": f"{LOOPBACK}:{port}"},
                         {"WSGATE_SECRET": SECRET})
    write_worker(config, tmp_path)
    (tmp_path / "config.capnp").write_text(render_capnp(
        config, config.listen, with_secret=True, allow=["127.0.0.2/32"]))
    server = ServerProcess([str(workerd_binary()), "serve", "config.capnp", "config"], port,
                           {"WSGATE_SECRET": SECRET}, str(tmp_path))
    mark = origin.mark()
    with server:
        ex = exchange(port, [b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n"], timeout=10)
        assert ex.statuses == [502]
        assert wait_until(lambda: "is not allowed" in server.output(), timeout=10), \
            server.output()
    assert origin.since(mark).requests == []


def test_a_worker_without_its_secret_fails_closed(
        origin: RecordingOrigin, tmp_path: Path) -> None:
    # As deployed before `wrangler secret put`: the binding is missing.
    port = free_port()
    config = load_config(None, {"origin": origin.url, "listen": f"{LOOPBACK}:{port}"},
                         {"WSGATE_SECRET": SECRET})
    write_worker(config, tmp_path)
    (tmp_path / "config.capnp").write_text(render_capnp(config, config.listen,
                                                        with_secret=False))
    server = ServerProcess([str(workerd_binary()), "serve", "config.capnp", "config"], port,
                           {}, str(tmp_path))
    mark = origin.mark()
    with server:
        ex = exchange(port, [b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n"], timeout=10)
    assert ex.statuses == [500]
    assert ex.responses[0].body == (b"Edge Proxy Error: the Worker secret WSGATE_SECRET is not "
                                    b"set (wrangler secret put WSGATE_SECRET)\n")
    assert origin.since(mark).requests == []


def test_the_secret_comes_from_secret_file_and_is_in_no_generated_file(
        origin: RecordingOrigin, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("from-a-file-" + "7" * 20 + "\n")
    out = tmp_path / "built"
    port = free_port()
    config = tmp_path / "edge.toml"
    config.write_text(config_toml({"listen": f"{LOOPBACK}:{port}",
                                   "secret_file": str(secret_file)}, [("*/*", origin.url)]))
    env = {"WSGATE_WORKERD": str(workerd_binary()), "WSGATE_SECRET": ""}
    dev = ServerProcess([sys.executable, "-m", "wsgate", "worker", "dev", "--config",
                         str(config), "--out", str(out)], port, env)
    mark = origin.mark()
    with dev:
        ex = exchange(port, [b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n"], timeout=10)
        assert ex.statuses == [200]
        files = {p.name: p.read_text() for p in out.iterdir()}
    assert sorted(files) == ["config.capnp", "worker.js", "wrangler.toml"]
    assert origin.since(mark).requests[0].values("x-cf-secret") == [b"from-a-file-" + b"7" * 20]
    for name, text in files.items():
        assert "from-a-file" not in text, name


def run_dev(tmp_path: Path, path_env: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "edge.toml"
    config.write_text(config_toml({"listen": f"{LOOPBACK}:{free_port()}"},
                                  [("*/*", "http://127.0.0.1:9")]))
    env = {k: v for k, v in os.environ.items() if k != "WSGATE_WORKERD"}
    env.update(PATH=path_env, WSGATE_SECRET=SECRET)
    return subprocess.run([sys.executable, "-m", "wsgate", "worker", "dev", "--config",
                           str(config)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)


def test_missing_workerd_is_one_line_naming_the_pinned_package(tmp_path: Path) -> None:
    npm = shutil.which("npm")
    assert npm is not None, "npm is needed to install workerd (scripts/test.sh)"
    done = run_dev(tmp_path, os.path.dirname(npm))
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "workerd" in line]
    assert errors == [f"wsgate worker dev: workerd is not installed: run `npm install "
                      f"--prefix .cache/workerd --no-save workerd@{WORKERD_VERSION}` "
                      "(or set WSGATE_WORKERD to its path)"]


def test_missing_node_and_npm_are_named(tmp_path: Path) -> None:
    empty = tempfile.mkdtemp(prefix="wsgate-empty-path-")
    done = run_dev(tmp_path, empty)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("wsgate worker dev: workerd is not installed and it needs Node.js "
                           "and npm")
    assert f"workerd@{WORKERD_VERSION}" in last


def test_dev_answers_like_the_edge_on_its_listen_address(origin: RecordingOrigin) -> None:
    with target_process("worker", [("*/*", origin.url)]) as dev:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{dev.port}/echo", timeout=10) as resp:
            assert resp.status == 200
            assert resp.headers["X-Worker-Proxy"] == "Active"
        # The line is printed once workerd listens, which can come just after the
        # first answer is read: wait for it rather than race it.
        assert wait_until(lambda: "workerd serving http://127.0.0.1:" in dev.output(),
                          timeout=10), dev.output()[-2000:]


def test_another_workerd_version_is_named_and_still_runs(
        origin: RecordingOrigin, tmp_path: Path) -> None:
    wrapper = tmp_path / "workerd"
    wrapper.write_text(f'#!/bin/sh\n[ "$1" = --version ] && {{ echo "workerd 2024-01-01"; '
                       f'exit 0; }}\nexec {workerd_binary()} "$@"\n')
    wrapper.chmod(0o755)
    dev = target_process("worker", [("*/*", origin.url)])
    dev.env["WSGATE_WORKERD"] = str(wrapper)
    with dev:
        ex = exchange(dev.port, [b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n"], timeout=10)
        assert ex.statuses == [200]
    assert (f"is workerd 2024-01-01; wsgate is tested with workerd@{WORKERD_VERSION}"
            in dev.output())


def test_a_busy_port_is_one_line_and_no_workerd(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind((LOOPBACK, 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = tmp_path / "edge.toml"
        config.write_text(config_toml({"listen": f"{LOOPBACK}:{port}"},
                                      [("*/*", "http://app.internal:8501")]))
        done = subprocess.run([sys.executable, "-m", "wsgate", "worker", "dev", "--config",
                               str(config)], env={**os.environ, "WSGATE_SECRET": SECRET,
                                                  "WSGATE_WORKERD": str(workerd_binary())},
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"wsgate worker dev: cannot listen on {LOOPBACK}:{port}: Address already in use"]
