"""Headless Debian chromium for the browser tests, launched one way everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
# No sandbox (containers, root), no GPU, and nothing that talks to the network on its own.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
APP_TIMEOUT_MS = 60_000  # first render under load: Streamlit + chart libraries


def launch_chromium(playwright: Any) -> Any:
    """A headless chromium from a running `sync_playwright()`; fails (never skips) when
    Debian's chromium is missing, since scripts/test.sh installs it."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install chromium")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
