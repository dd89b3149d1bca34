"""The demo app in headless Chromium through the Worker in workerd (no `wsgate edge`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.demo.helpers import guarded_stack
from tests.support.browser import APP_TIMEOUT_MS, launch_chromium
from tests.worker.targets import target_process
from wsgate.demo.stack import DemoStack

pytestmark = [pytest.mark.browser, pytest.mark.streamlit, pytest.mark.slow]


sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    # The demo's origin (`wsgate run`, its public URL on plan.edge_port); the Worker
    # takes the edge's place on that port.
    with guarded_stack(tmp_path_factory.mktemp("worker-browser"), edge=False) as running:
        yield running


def test_demo_renders_and_round_trips_through_the_worker(stack: DemoStack) -> None:
    plan = stack.plan
    worker = target_process("worker", [("*/*", plan.origin_url)], secret=stack.secret,
                            port=plan.edge_port)
    with worker, sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            response = page.goto(plan.public_url)
            assert response is not None and response.status == 200
            assert response.headers.get("x-worker-proxy") == "Active"
            expect = sync_api.expect
            expect(page.get_by_role("heading", name="wsgate demo")).to_be_visible(
                timeout=APP_TIMEOUT_MS)
            counter = page.get_by_test_id("stMetricValue")
            expect(counter).to_have_text("0", timeout=APP_TIMEOUT_MS)
            button = page.get_by_role("button", name="Increment")
            button.click()
            expect(counter).to_have_text("1", timeout=30_000)
            button.click()
            expect(counter).to_have_text("2", timeout=30_000)
            assert stack.secret not in page.content()
        finally:
            browser.close()
    websocket_errors = [m for m in console if "websocket" in m.lower()
                        and ("error" in m.lower() or "failed" in m.lower())]
    assert websocket_errors == [], console
    assert any(e.get("isWebSocket") and e["httpRequest"]["status"] == 101
               for e in worker.events()), worker.events_text()[-2000:]
