"""Headless Chromium: the demo app on three `wsgate run` replicas behind an edge keeps
its session when the edge process is replaced by another with the same configuration
(the browser's WebSocket drops and reconnects; the affinity cookie brings it back to
its replica, which resumes the session: the counter keeps its value)."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

import pytest

from tests.edge.test_origins import config_file, origin_states, serving
from tests.guard.fixtures import start_guarded_streamlit
from tests.support import SECRET, Edge, edge_process, free_port, wait_until
from tests.support.browser import APP_TIMEOUT_MS, launch_chromium
from wsgate.demo.stack import bundled_app

pytestmark = [pytest.mark.browser, pytest.mark.streamlit, pytest.mark.slow]


sync_api = pytest.importorskip("playwright.sync_api")


def edge_on(port: int, config: Path) -> Edge:
    """An edge on a fixed port (a replacement edge listens where the old one did)."""
    # The last --listen wins (click), so this one replaces the helper's free port.
    edge = edge_process(None, extra=("--config", str(config), "--listen", f"127.0.0.1:{port}"))
    edge.port = port
    return edge


def open_websockets(edge: Edge) -> int:
    """WebSockets the edge has open to the replicas (0 while its admin listener, which
    starts just after the public one, is not up yet)."""
    try:
        return sum(int(s["openWebSockets"]) for s in origin_states(edge).values())
    except OSError:
        return 0


def test_the_counter_survives_a_new_edge_process(tmp_path: Path) -> None:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    with contextlib.ExitStack() as stack:
        replicas = [stack.enter_context(start_guarded_streamlit(
            bundled_app(), secrets=(SECRET,), run_args=("--public-url", public)))
            for _ in range(3)]
        config = config_file([r.base_url for r in replicas], interval=1.0, timeout=1.0,
                             unhealthy_threshold=2)
        playwright = stack.enter_context(sync_api.sync_playwright())
        browser = launch_chromium(playwright)
        stack.callback(browser.close)
        page = browser.new_page()
        console: list[str] = []  # for the failure message: the frontend says why
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        expect = sync_api.expect
        with serving(edge_on(port, config)) as first:
            page.goto(public)
            counter = page.get_by_test_id("stMetricValue")
            expect(counter).to_have_text("0", timeout=APP_TIMEOUT_MS)
            button = page.get_by_role("button", name="Increment")
            button.click()
            expect(counter).to_have_text("1", timeout=30_000)
            button.click()
            expect(counter).to_have_text("2", timeout=30_000)
            first.signal(signal.SIGTERM)  # its WebSocket closes (1001)
            assert first.process is not None and first.process.wait(30) == 0, first.output()
        with serving(edge_on(port, config)) as second:
            # The frontend reconnects to the new edge process, which never saw this
            # browser: only the cookie says where its session lives.
            assert wait_until(lambda: open_websockets(second) > 0, 60), \
                (origin_states(second), second.events_text()[-2000:])
            try:
                expect(counter).to_have_text("2", timeout=30_000)  # the session resumed
                button.click()
                expect(counter).to_have_text("3", timeout=30_000)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\nconsole: {console[-20:]}\nedge: "
                                     f"{second.events_text()[-2000:]}") from None
