"""Reloads (SIGHUP) that drop nothing, and `wsgate edge --check`.

The reload test changes three things at once (the marker header, the origin, and the
secret, rotated through `secret_file`) between two real origins that each refuse
any request without their own secret, while 50 WebSockets stay open and a client
loop keeps opening new connections.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.sync.client import connect as sync_connect

from tests.edge.worker_support import (
    Outcome,
    SecretOrigin,
    burst,
    child_pids,
    client_loop,
    get,
    metric,
    metrics_text,
    readyz,
)
from tests.support import REPO, Edge, edge_process, started, wait_until, wsgate_command
from tests.support.edge import config_toml
from tests.support.wire import recv_until_closed

OLD_SECRET = "reload-old-secret-5d1c0b7e93a24f68"
NEW_SECRET = "reload-new-secret-a8e4f21b6c9d3057"
SOCKETS = 50


def config_path(edge: Edge) -> Path:
    args = list(edge.args)
    return Path(args[args.index("--config") + 1])


def write_config(edge: Edge, settings: Mapping[str, Any], origin: str) -> None:
    config_path(edge).write_text(config_toml(settings, [("*/*", origin)]))


def serving(edge: Edge, count: int) -> bool:
    try:
        return metric(edge.admin_port, "wsgate_edge_workers", state="serving") == count
    except OSError:
        return False


def wait_retiring(edge: Edge, workers: set[int]) -> None:
    """Until each of `workers` has logged that it accepts no more connections."""
    for pid in workers:
        edge.wait_event(lambda e, pid=pid: f"(pid {pid}) retiring" in e["message"], 10)


def generation_of(outcome: Outcome) -> tuple[str, str]:
    """(marker header value, origin name in the body) of one answer."""
    return outcome.headers.get("x-generation", ""), outcome.body.decode(errors="replace")


async def echo(ws: ClientConnection, text: str) -> str:
    await ws.send(text)
    answer = await asyncio.wait_for(ws.recv(), 10)
    return answer if isinstance(answer, str) else answer.decode()


@pytest.mark.slow
def test_reload_switches_origin_marker_and_secret_without_dropping_anything(
        tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(OLD_SECRET + "\n")
    settings: dict[str, Any] = {"secret_file": str(secret_file), "workers": 2,
                                "marker_header": "X-Generation: one"}
    with SecretOrigin("A", OLD_SECRET) as a, SecretOrigin("B", NEW_SECRET) as b, \
            started(edge_process(None, settings=settings, routes=[("*/*", a.url)])) as edge:
        assert wait_until(lambda: serving(edge, 2), 30), edge.output()
        first = child_pids(edge.pid)

        readiness: list[int] = []  # /readyz while the reload happens

        async def scenario() -> tuple[list[Outcome], list[str], str]:
            url = f"ws://127.0.0.1:{edge.port}/stream"
            sockets = [await connect(url) for _ in range(SOCKETS)]
            assert [await echo(ws, f"hi {i}") for i, ws in enumerate(sockets)] == [
                f"A:hi {i}" for i in range(SOCKETS)]
            outcomes: list[Outcome] = []
            stop = asyncio.Event()
            load = asyncio.create_task(client_loop(edge.port, outcomes, stop, 4000))

            async def poll_readiness() -> None:
                while not stop.is_set():
                    readiness.append(await asyncio.to_thread(readyz, edge.admin_port))
                    await asyncio.sleep(0.05)

            poll = asyncio.create_task(poll_readiness())
            while len(outcomes) < 20 and not load.done():
                await asyncio.sleep(0.02)
            secret_file.write_text(NEW_SECRET + "\n")
            write_config(edge, {**settings, "marker_header": "X-Generation: two"}, b.url)
            edge.signal(signal.SIGHUP)
            for _ in range(600):  # bounded: 30 s for the new generation to answer
                if any(generation_of(o)[0] == "two" for o in outcomes) or load.done():
                    break
                await asyncio.sleep(0.05)
            switched = len(outcomes)
            while len(outcomes) < switched + 40 and not load.done():
                await asyncio.sleep(0.02)
            stop.set()
            await load
            await poll
            after = [await echo(ws, f"again {i}") for i, ws in enumerate(sockets)]
            await asyncio.to_thread(wait_retiring, edge, first)
            async with connect(url) as fresh:
                fresh_answer = await echo(fresh, "new")
            for ws in sockets:
                await ws.close()
            return outcomes, after, fresh_answer

        outcomes, after, fresh_answer = asyncio.run(scenario())
        assert [o for o in outcomes if not o.ok] == [], "a request failed during the reload"
        assert readiness and set(readiness) == {200}  # a load balancer never saw it go
        # Each answer is wholly one generation's (marker and origin together).
        seen = {generation_of(o) for o in outcomes}
        assert seen == {("one", '{"origin": "A"}'), ("two", '{"origin": "B"}')}
        # Once both old workers stopped accepting, every new request is generation 2's.
        later = asyncio.run(burst(edge.port, 20))
        assert {generation_of(o) for o in later} == {("two", '{"origin": "B"}')}
        # The old WebSockets still run on generation 1 (origin A); new ones go to B.
        assert after == [f"A:again {i}" for i in range(SOCKETS)]
        assert fresh_answer == "B:new"
        # Each origin only ever saw its own secret.
        assert a.refused == 0 and b.refused == 0 and b.accepted > 0
        assert metric(edge.admin_port, "wsgate_edge_reloads_total", result="ok") == 1
        assert metric(edge.admin_port, "wsgate_edge_config_generation") == 2
        # Once its WebSockets closed, the old generation went away by itself.
        assert wait_until(lambda: len(child_pids(edge.pid)) == 2
                          and not child_pids(edge.pid) & first, 30)
        assert wait_until(lambda: metric(edge.admin_port, "wsgate_edge_workers",
                                         state="retiring") == 0, 10)
    assert OLD_SECRET not in edge.all_output() and NEW_SECRET not in edge.all_output()


@pytest.mark.slow
@pytest.mark.parametrize("workers", [2, 1])
def test_an_invalid_file_on_sighup_changes_nothing_and_is_reported(
        tmp_path: Path, workers: int) -> None:
    settings = {"workers": workers, "marker_header": "X-Generation: one"}
    with SecretOrigin("A", "edge-test") as a, started(edge_process(
            None, settings=settings, routes=[("*/*", a.url)], secret="edge-test")) as edge:
        assert wait_until(lambda: serving(edge, 2) if workers == 2 else True, 30)
        before = child_pids(edge.pid)
        bad = {**settings, "marker_header": "X-Generation: two",
               "timeouts": {"reload_websockets": -5}}
        write_config(edge, bad, a.url)
        edge.signal(signal.SIGHUP)
        event = edge.wait_event(lambda e: e.get("errorClass") == "reload-invalid-config", 10)
        assert event["error"].startswith("timeouts.reload_websockets:")
        refused = [line for line in edge.output().splitlines() if "reload refused" in line]
        assert len(refused) == 1 and "timeouts.reload_websockets:" in refused[0]
        # Still the first configuration, served by the same processes.
        answer = asyncio.run(get(edge.port))
        assert answer.ok and generation_of(answer)[0] == "one"
        assert child_pids(edge.pid) == before
        assert edge.alive()
        if workers == 2:
            assert metric(edge.admin_port, "wsgate_edge_reloads_total", result="invalid") == 1
            assert metric(edge.admin_port, "wsgate_edge_config_generation") == 1


@pytest.mark.slow
def test_one_process_reloads_in_place_and_keeps_its_websockets(tmp_path: Path) -> None:
    settings = {"marker_header": "X-Generation: one"}
    with SecretOrigin("A", "edge-test") as a, SecretOrigin("B", "edge-test") as b, \
            started(edge_process(None, settings=settings, routes=[("*/*", a.url)],
                                 secret="edge-test")) as edge:
        pid = edge.pid

        async def scenario() -> tuple[list[Outcome], str]:
            async with connect(f"ws://127.0.0.1:{edge.port}/stream") as ws:
                assert await echo(ws, "before") == "A:before"
                outcomes: list[Outcome] = []
                stop = asyncio.Event()
                load = asyncio.create_task(client_loop(edge.port, outcomes, stop, 2000))
                while len(outcomes) < 10 and not load.done():
                    await asyncio.sleep(0.02)
                write_config(edge, {"marker_header": "X-Generation: two"}, b.url)
                edge.signal(signal.SIGHUP)
                for _ in range(400):
                    if any(generation_of(o)[0] == "two" for o in outcomes) or load.done():
                        break
                    await asyncio.sleep(0.05)
                stop.set()
                await load
                return outcomes, await echo(ws, "after")

        outcomes, after = asyncio.run(scenario())
        assert [o for o in outcomes if not o.ok] == []
        assert generation_of(outcomes[-1]) == ("two", '{"origin": "B"}')
        assert after == "A:after"
        assert edge.pid == pid and edge.alive()


@pytest.mark.slow
@pytest.mark.parametrize("workers", [2, 1])
def test_a_connection_accepted_before_a_reload_still_gets_its_answer(
        tmp_path: Path, workers: int) -> None:
    """Connections the old generation accepted but whose request had not arrived yet
    when the reload came: each is answered, none closed unanswered."""
    settings = {"workers": workers, "marker_header": "X-Generation: one"}
    with SecretOrigin("A", "edge-test") as a, started(edge_process(
            None, settings=settings, routes=[("*/*", a.url)], secret="edge-test")) as edge:
        assert wait_until(lambda: serving(edge, 2) if workers == 2 else True, 30)
        old = child_pids(edge.pid) if workers == 2 else {edge.pid}
        silent = [socket.create_connection(("127.0.0.1", edge.port), timeout=10)
                  for _ in range(8)]
        write_config(edge, {**settings, "marker_header": "X-Generation: two"}, a.url)
        edge.signal(signal.SIGHUP)
        edge.wait_event(lambda e: e["message"].startswith("reloaded"), 30)
        wait_retiring(edge, old - {edge.pid})
        answers = []
        for sock in silent:
            with sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: app.example.com\r\n"
                             b"Connection: close\r\n\r\n")
                answers.append(recv_until_closed(sock, timeout=10))
        assert [answer[:12] for answer in answers] == [b"HTTP/1.1 200"] * len(silent)


def run_check(*args: str, env: Mapping[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(wsgate_command("edge", "--check", *args), capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def test_check_prints_the_effective_configuration_with_the_secret_masked(
        tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(config_toml({"workers": "auto", "timeouts": {"reload_websockets": 600}},
                                  [("app.example.com/*", "http://127.0.0.1:8501")]))
    result = run_check("--config", str(config), "--listen", "127.0.0.1:9999",
                       env={"WSGATE_SECRET": OLD_SECRET})
    assert result.returncode == 0, result.stderr
    assert OLD_SECRET not in result.stdout + result.stderr
    assert '# secret = "***" (from environment variable WSGATE_SECRET)' in result.stdout
    assert 'listen = "127.0.0.1:9999"' in result.stdout  # the flag won over the file
    assert "reload_websockets = 600.0" in result.stdout
    assert 'origin = "http://127.0.0.1:8501"' in result.stdout
    assert result.stderr.strip().endswith("is valid")
    # What --check prints is itself a configuration that --check accepts, unchanged.
    effective = tmp_path / "effective.toml"
    effective.write_text(result.stdout)
    again = run_check("--config", str(effective), env={"WSGATE_SECRET": OLD_SECRET})
    assert again.returncode == 0, again.stderr
    assert again.stdout == result.stdout


@pytest.mark.parametrize(("settings", "key"), [
    ({"workers": 0}, "workers:"),
    ({"workers": "many"}, "workers:"),
    ({"timeouts": {"reload_websockets": "soon"}}, "timeouts.reload_websockets:"),
    ({"tls_cert": "CERT", "tls_key": "CERT"}, "tls_cert:"),  # exists, but is no certificate
    ({"log_file": "/nonexistent-wsgate-dir/edge.jsonl"}, "log_file:"),
])
def test_check_refuses_an_invalid_file_with_one_line_naming_the_key(
        tmp_path: Path, settings: dict[str, Any], key: str) -> None:
    not_a_cert = tmp_path / "cert.pem"
    not_a_cert.write_text("not a certificate\n")
    settings = {k: (str(not_a_cert) if v == "CERT" else v) for k, v in settings.items()}
    config = tmp_path / "edge.toml"
    config.write_text(config_toml(settings, [("*/*", "http://127.0.0.1:8501")]))
    result = run_check("--config", str(config), env={"WSGATE_SECRET": OLD_SECRET})
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"wsgate edge: configuration error: {key}")
    assert "Traceback" not in result.stderr


def test_the_systemd_unit_checks_before_it_starts_and_reloads(tmp_path: Path) -> None:
    """Every wsgate command line of examples/systemd/wsgate-edge.service is valid as
    written (with the example config and a secret file in place of /etc/wsgate)."""
    unit = (REPO / "examples/systemd/wsgate-edge.service").read_text()
    commands = [line.split("=", 1) for line in unit.splitlines()
                if line.startswith(("ExecStartPre=", "ExecStart=", "ExecReload="))]
    assert ["ExecReload", "/bin/kill -HUP $MAINPID"] in [[k, v] for k, v in commands]
    assert "KillMode=mixed" in unit.splitlines()
    secret = tmp_path / "secret"
    secret.write_text(OLD_SECRET + "\n")
    wsgate_lines = [v for _, v in commands if v.startswith("/usr/local/bin/wsgate ")]
    assert len(wsgate_lines) == 3
    for line in wsgate_lines:
        args = line.replace("/etc/wsgate/edge.toml", str(REPO / "examples/edge.toml")) \
            .replace("/etc/wsgate/secret", str(secret)).split()[2:]  # after "wsgate edge"
        args = [a for a in args if a != "--check"]
        result = run_check(*args)
        assert result.returncode == 0, (line, result.stderr)
        assert "workers = " in result.stdout and OLD_SECRET not in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_reload_with_a_route_of_several_origins(tmp_path: Path, workers: int) -> None:
    """Per-origin state (health checks and their metrics) passes to the new generation."""
    settings = {"workers": workers, "health": {"path": "/health", "interval": 1.0,
                                               "timeout": 0.5}}
    with SecretOrigin("A", "edge-test") as a, SecretOrigin("B", "edge-test") as b:
        edge = edge_process(None, settings=settings, routes=[("*/*", a.url)],
                            secret="edge-test")

        def configure(marker: str) -> None:
            config_path(edge).write_text(
                config_toml({**settings, "marker_header": f"X-Generation: {marker}"})
                + f'[[routes]]\npattern = "*/*"\norigins = ["{a.url}", "{b.url}"]\n')

        configure("one")
        with started(edge):
            assert wait_until(lambda: serving(edge, 2) if workers == 2 else True, 30)
            # A WebSocket keeps the old generation retiring while metrics are read.
            with sync_connect(f"ws://127.0.0.1:{edge.port}/stream", open_timeout=10) as kept:
                configure("two")
                edge.signal(signal.SIGHUP)
                edge.wait_event(lambda e: e["message"].startswith("reloaded"), 30)
                answers = asyncio.run(burst(edge.port, 8))
                assert {o.status for o in answers} == {200}
                assert wait_until(lambda: metric(edge.admin_port, "wsgate_edge_origin_up",
                                                 origin=b.url) >= 1, 10)
                assert "reload refused" not in edge.output()
                assert "Traceback" not in edge.all_output()
                # One family per metric while the old generation retires (a scrape with a
                # metric twice is invalid for Prometheus).
                text = metrics_text(edge.admin_port)
                assert text.count("# TYPE wsgate_edge_origin_up gauge") == 1
                kept.send("still here")
                assert kept.recv(timeout=10) in ("A:still here", "B:still here")


@pytest.mark.slow
def test_sighup_while_the_workers_start_reloads_once_they_are_up(tmp_path: Path) -> None:
    settings = {"workers": 2, "marker_header": "X-Generation: one"}
    with SecretOrigin("A", "edge-test") as a, started(edge_process(
            None, settings=settings, routes=[("*/*", a.url)], secret="edge-test")) as edge:
        # The port is bound first; the workers take about a second to start.
        write_config(edge, {**settings, "marker_header": "X-Generation: two"}, a.url)
        edge.signal(signal.SIGHUP)
        edge.wait_event(lambda e: e["message"].startswith("reloaded"), 30)
        assert edge.alive()
        assert wait_until(lambda: serving(edge, 2), 30)
        assert metric(edge.admin_port, "wsgate_edge_config_generation") == 2
