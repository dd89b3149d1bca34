"""Helpers for the logs tests: fixture paths, reading events, running `wsgate logs`."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.support import wsgate_command
from wsgate.logs.model import Event
from wsgate.logs.query import Query
from wsgate.logs.reader import ReadStats, read_events

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Every fixture of another system's format, with the source it must be read as.
FOREIGN = {
    "gcloud_read.json": "cloud-logging",
    "cloud_logging_lines.jsonl": "cloud-logging",
    "wrangler_tail.json": "wrangler",
    "wrangler_lines.jsonl": "wrangler",
}


def events_of(name: str | Path, query: Query | None = None) -> tuple[list[Event], ReadStats]:
    path = name if isinstance(name, Path) else FIXTURES / name
    stats = ReadStats()
    with open(path, "rb") as handle:
        # The command's shortcuts (raw-line prefilter, quick check), then the full filter.
        events = list(read_events(handle, stats, query.prefilter() if query else None,
                                  query.quick_check() if query else None))
    if query is not None:
        events = [e for e in events if query.matches(e)]
    return events, stats


def run_logs(*args: str, stdin: bytes | None = None,
             timeout: float = 60.0) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(wsgate_command("logs", *args), input=stdin, capture_output=True,
                          timeout=timeout, check=False)


def json_lines(output: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.decode().splitlines() if line.strip()]


def read_messages(process: subprocess.Popen[bytes], count: int,
                  timeout: float = 15.0) -> list[str]:
    """The next `count` JSON lines of the command's stdout, waiting at most `timeout` seconds."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    buffer, got = b"", list[str]()
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while len(got) < count and time.monotonic() < deadline:
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            got.extend(json.loads(line)["message"] for line in complete if line)
    return got
