"""A real browser (Debian chromium, headless) through the edge and directly at the origin."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.demo.helpers import guarded_stack
from tests.examples.nginx_setup import nginx
from tests.support import free_port
from tests.support.browser import APP_TIMEOUT_MS, launch_chromium
from wsgate.demo.stack import DemoStack

pytestmark = [pytest.mark.browser, pytest.mark.streamlit, pytest.mark.slow]


sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    with guarded_stack(tmp_path_factory.mktemp("browser-stack")) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        instance = launch_chromium(playwright)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1000, "height": 1080})  # type: ignore[attr-defined]
    page = context.new_page()
    yield page
    context.close()


def test_app_works_through_the_edge(stack: DemoStack, page: object, tmp_path: Path) -> None:
    p: sync_api.Page = page  # type: ignore[assignment]
    console: list[str] = []
    p.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    p.on("pageerror", lambda e: console.append(f"pageerror: {e}"))

    response = p.goto(stack.plan.public_url)
    assert response is not None and response.status == 200
    expect = sync_api.expect
    expect(p.get_by_role("heading", name="wsgate demo")).to_be_visible(timeout=APP_TIMEOUT_MS)
    counter = p.get_by_test_id("stMetricValue")
    expect(counter).to_have_text("0", timeout=APP_TIMEOUT_MS)

    # Each click is a WebSocket round trip: rerun request up, new page delta down.
    button = p.get_by_role("button", name="Increment")
    button.click()
    expect(counter).to_have_text("1", timeout=30_000)
    button.click()
    expect(counter).to_have_text("2", timeout=30_000)

    # The slider redraws the chart on the server: move it with the keyboard.
    slider = p.get_by_role("slider")
    slider.focus()
    slider.press("ArrowRight")
    expect(slider).to_have_value("4", timeout=30_000)
    # This caption is written by the server after the rerun the slider caused.
    expect(p.get_by_text("Drawn by the server for frequency 4.")).to_be_visible(
        timeout=30_000)
    expect(p.get_by_test_id("stVegaLiteChart")).to_be_visible()
    expect(counter).to_have_text("2")  # session state kept across reruns

    # What the origin received from the edge, shown by the app; never the secret.
    p.get_by_text("What the origin received from the edge").click()
    expect(p.get_by_text(f"127.0.0.1:{stack.plan.edge_port}").first).to_be_visible()
    expect(p.get_by_text("X-Request-Id")).to_be_visible()
    assert stack.secret not in p.content()
    p.wait_for_timeout(500)  # only for the picture: let the expander finish opening

    p.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
    if target := os.environ.get("WSGATE_DEMO_SCREENSHOT"):
        shutil.copy(tmp_path / "demo.png", target)

    websocket_errors = [m for m in console if "websocket" in m.lower()
                        and ("error" in m.lower() or "failed" in m.lower())]
    assert websocket_errors == [], console
    assert not [m for m in console if m.startswith("pageerror")], console


def test_origin_directly_shows_403_and_never_the_app(stack: DemoStack, page: object) -> None:
    p: sync_api.Page = page  # type: ignore[assignment]
    response = p.goto(stack.plan.origin_url)
    assert response is not None and response.status == 403
    body = p.locator("body")
    sync_api.expect(body).to_contain_text("Direct access refused")
    # The refusal names the public URL, so a lost user knows where to go.
    sync_api.expect(body).to_contain_text(stack.plan.public_url)
    p.wait_for_timeout(2_000)  # give a (wrongly) served app time to appear
    assert p.get_by_role("heading", name="wsgate demo").count() == 0
    assert p.get_by_test_id("stApp").count() == 0
    assert stack.secret not in p.content()


@pytest.mark.nginx
def test_console_shows_the_guides_error_when_a_proxy_drops_the_upgrade(
        stack: DemoStack, page: object, tmp_path: Path) -> None:
    # The guide's first failure row, built from a real misconfigured proxy: nginx
    # from examples/ without its Upgrade/Connection lines. This is what the console
    # check above would catch, and the app must not render.
    p: sync_api.Page = page  # type: ignore[assignment]
    port = free_port()
    with nginx(tmp_path, listen_port=port, origin_port=stack.plan.origin_port,
               secret=stack.secret, drop_upgrade=True):
        with p.expect_console_message(
                lambda m: "WebSocket" in m.text and "handshake" in m.text,
                timeout=APP_TIMEOUT_MS) as message:
            p.goto(f"http://127.0.0.1:{port}")
        assert message.value.type == "error"
        assert "/_stcore/stream" in message.value.text
        assert p.get_by_test_id("stMetricValue").count() == 0
