"""Helpers shared by tests/demo, tests/examples and tests/browser."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support import free_port
from wsgate.demo.stack import DemoPlan, DemoStack, bundled_app

# Streamlit may take 10+ s to start while other engineers' tests load the machine.
STARTUP_TIMEOUT = 120.0


def doctor_json(url: str, *extra: str, env: Mapping[str, str] | None = None,
                timeout: float = 90.0) -> tuple[int, dict[str, Any]]:
    """Run `wsgate doctor URL --json`; returns (exit code, report)."""
    done = subprocess.run(
        [sys.executable, "-m", "wsgate", "doctor", url, "--json", *extra],
        env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout,
        check=False)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"doctor printed no JSON (exit {done.returncode}):\n"
                             f"{done.stdout}\n{done.stderr}") from exc
    return done.returncode, report


def describe(report: Mapping[str, Any]) -> str:
    """The failing checks and diagnoses, for assertion messages."""
    failing = [c for c in report.get("checks", []) if c.get("status") != "pass"]
    return json.dumps({"failing": failing, "diagnoses": report.get("diagnoses")}, indent=1)


@contextmanager
def guarded_stack(tmp: Path, *, edge: bool = True, edge_port: int | None = None,
                  app: Path | None = None) -> Iterator[DemoStack]:
    """The demo's own stack (wsgate run, optionally wsgate edge) on free loopback ports."""
    plan = DemoPlan(app=app or bundled_app(), origin_port=free_port(),
                    edge_port=edge_port or free_port(), log_dir=tmp)
    with DemoStack(plan) as stack:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        stack.start_origin(deadline)
        if edge:
            stack.start_edge(deadline)
        yield stack


def pids_mentioning(text: str) -> list[int]:
    """Processes whose command line contains `text` (to prove nothing was orphaned)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found
