"""Suite-wide safety net: nothing a test starts may talk to the outside network.

Streamlit looks up the machine's public IP over HTTP (checkip.amazonaws.com) at
start and in its WebSocket Origin check. `wsgate run` turns that off, but tests
also start plain `streamlit run` as a misconfigured or unguarded origin. Every
child process inherits a proxy setting that points at a closed loopback port, so
such lookups fail at once on this machine, while loopback stays direct.
"""

from __future__ import annotations

import os

import pytest

DEAD_PROXY = "http://127.0.0.1:9"
for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ[name] = DEAD_PROXY
for name in ("NO_PROXY", "no_proxy"):
    os.environ[name] = "localhost,127.0.0.1,::1"
# Tests read English messages unless they ask for another language (tests/i18n does,
# per command): a developer's Japanese locale must not change what they see.
os.environ["WSGATE_LANG"] = "en"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The reliability figures the hardening tests recorded, once per run."""
    from tests.hostile import figures

    lines = figures.report_once()
    if lines:
        terminalreporter.section("wsgate reliability figures")
        for line in lines:
            terminalreporter.write_line(line)
