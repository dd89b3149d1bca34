"""--follow: a file appended, rotated (rename + create) and truncated while it is read."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.logs.helpers import read_messages
from tests.support import wsgate_command
from wsgate.logs.follow import follow

TIMEOUT = 15.0


def _line(message: str) -> bytes:
    return (json.dumps({"severity": "INFO", "message": message, "source": "edge"})
            + "\n").encode()


def _next_lines(lines: Iterator[tuple[int, bytes]], count: int) -> list[str]:
    got = []
    for _, raw in lines:
        got.append(json.loads(raw)["message"])
        if len(got) == count:
            break
    return got


def test_follow_reads_appends_rotation_and_truncation(tmp_path: Path) -> None:
    path = tmp_path / "edge.log"
    path.write_bytes(_line("a"))
    deadline = time.monotonic() + TIMEOUT
    lines = follow([str(path)], interval=0.01,
                   should_stop=lambda: time.monotonic() > deadline)

    assert _next_lines(lines, 1) == ["a"]
    with open(path, "ab") as writer:
        writer.write(_line("b"))
        writer.write(_line("c")[:10])  # half a line: not yielded until complete
        writer.flush()
        assert _next_lines(lines, 1) == ["b"]
        writer.write(_line("c")[10:])
        writer.flush()
        assert _next_lines(lines, 1) == ["c"]

        # logrotate: rename, the writer adds a last line to the old file, new file created
        os.rename(path, tmp_path / "edge.log.1")
        writer.write(_line("d"))
        writer.flush()
    path.write_bytes(_line("e" * 50))
    assert _next_lines(lines, 2) == ["d", "e" * 50]

    # copytruncate / `> file`: same inode, size back to zero, then new lines (shorter than
    # what was read: a rewrite to the same length is not detectable by size, see docs)
    with open(path, "r+b") as writer:
        writer.truncate(0)
    with open(path, "ab") as writer:
        writer.write(_line("f"))
    assert _next_lines(lines, 1) == ["f"]
    assert time.monotonic() < deadline


def test_follow_waits_for_a_file_that_does_not_exist_yet(tmp_path: Path) -> None:
    path = tmp_path / "later.log"
    deadline = time.monotonic() + TIMEOUT
    polls = 0

    def stop() -> bool:
        nonlocal polls
        polls += 1
        if polls == 3:
            path.write_bytes(_line("late"))
        return time.monotonic() > deadline

    lines = follow([str(path)], interval=0.01, should_stop=stop)
    assert _next_lines(lines, 1) == ["late"]



def test_logs_follow_command_keeps_up_with_a_rotating_file(tmp_path: Path) -> None:
    """The real command in a pipe: filtered JSON lines appear as the file grows."""
    path = tmp_path / "edge.log"
    path.write_bytes(_line("keep 0") + _line("skip me"))
    process = subprocess.Popen(
        wsgate_command("logs", "--follow", "--search", "keep", "--format", "json", str(path)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert read_messages(process, 1) == ["keep 0"]  # it is reading: now change the file
        with open(path, "ab") as writer:
            writer.write(_line("keep 1"))
        os.rename(path, tmp_path / "edge.log.1")
        path.write_bytes(_line("keep 2") + _line("nope"))
        assert read_messages(process, 2) == ["keep 1", "keep 2"]
        with open(path, "r+b") as writer:
            writer.truncate(0)
        # Shorter than what was read, so the truncation shows whenever it polls.
        path.write_bytes(_line("keep 3"))
        assert read_messages(process, 1) == ["keep 3"]
    finally:
        process.terminate()
        process.wait(TIMEOUT)
    assert process.stderr is not None
    errors = process.stderr.read().decode()
    assert "Traceback" not in errors
    assert "rotated" in errors and "truncated" in errors
