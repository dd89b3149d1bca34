from __future__ import annotations

import pytest

from tests.hostile import figures


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = figures.report_once()
    if lines:
        terminalreporter.section("wsgate reliability figures")
        for line in lines:
            terminalreporter.write_line(line)
