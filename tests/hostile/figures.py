"""Reliability figures gathered while the hardening tests run.

Tests add to a process-wide tally; the conftest of each hardening folder prints it
once at the end of the run and, when WSGATE_FIGURES names a file, writes it there as
JSON (docs/reliability.md quotes these numbers).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FIGURES: dict[str, Any] = {}
_printed = False


def add(key: str, amount: int = 1) -> None:
    FIGURES[key] = int(FIGURES.get(key, 0)) + amount


def put(key: str, value: Any) -> None:
    FIGURES[key] = value


def report_once() -> list[str]:
    """Lines for the terminal summary, only the first time it is asked."""
    global _printed
    if _printed or not FIGURES:
        return []
    _printed = True
    target = os.environ.get("WSGATE_FIGURES")
    if target:
        Path(target).write_text(json.dumps(FIGURES, indent=2, sort_keys=True) + "\n")
    return [f"{key}: {FIGURES[key]}" for key in sorted(FIGURES)]
