"""`tail -f` for log files: keeps reading as they grow, survives rotation and truncation.

Polling (stat + read) rather than inotify: portable, and a log viewer needs no
sub-second latency. Rotation is noticed as a new inode at the path (logrotate's
rename + create; the old file is read to its end first), truncation as a size
smaller than what was read (copytruncate, `> file`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from wsgate.i18n import _

MAX_LINE = 4 * 1024 * 1024  # a "line" longer than this is cut, so memory stays bounded


@dataclass
class _Followed:
    path: str
    handle: BinaryIO | None = None
    identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the open file
    partial: bytes = b""
    position: int = 0
    notes: list[str] = field(default_factory=list)

    def open(self, from_start: bool = True) -> bool:
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - kept open across polls
        except OSError:
            return False
        stat = os.fstat(handle.fileno())
        self.close()
        self.handle, self.identity = handle, (stat.st_dev, stat.st_ino)
        self.partial, self.position = b"", 0
        if not from_start:
            self.position = handle.seek(0, os.SEEK_END)
        return True

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
        self.handle = None

    def read_lines(self) -> Iterator[bytes]:
        """Complete lines available now; a partial last line waits for its newline."""
        if self.handle is None:
            return
        while True:
            chunk = self.handle.readline(MAX_LINE)
            if not chunk:
                return
            self.position += len(chunk)
            if chunk.endswith(b"\n") or len(self.partial) + len(chunk) >= MAX_LINE:
                line, self.partial = self.partial + chunk, b""
                yield line
            else:
                self.partial += chunk

    def poll(self) -> Iterator[bytes]:
        """Lines written since the last poll, across a rotation or a truncation."""
        yield from self.read_lines()
        try:
            stat = os.stat(self.path)
        except OSError:
            return  # rotated away and not recreated yet: keep reading the old file
        if self.handle is None:
            if self.open():
                yield from self.read_lines()
            return
        if (stat.st_dev, stat.st_ino) != self.identity:
            # Lines the writer added just before renaming belong to the old file.
            yield from self.read_lines()
            if self.partial:
                yield self.partial
            self.notes.append(_("{path}: rotated, reading the new file").format(path=self.path))
            if self.open():
                yield from self.read_lines()
            return
        if stat.st_size < self.position:
            self.notes.append(_("{path}: truncated, reading from the start").format(
                path=self.path))
            assert self.handle is not None
            self.handle.seek(0)
            self.partial, self.position = b"", 0
            yield from self.read_lines()


def follow_rounds(paths: list[str], *, interval: float = 0.25,
                  should_stop: Callable[[], bool] = lambda: False,
                  on_idle: Callable[[], None] = lambda: None,
                  on_note: Callable[[str], None] = lambda note: None
                  ) -> Iterator[list[Iterator[bytes]]]:
    """The files' lines, now and as they grow, in rounds: each round is one iterator
    per path over the lines written since the previous round (consume them before
    asking for the next round; they may be consumed interleaved, e.g. merged).

    Existing content is the first round, read from the start. Runs until
    `should_stop()` is true (checked once per round); `on_idle` runs before each sleep
    (the caller flushes its output). A path that does not exist yet is waited for.
    """
    files = [_Followed(path) for path in paths]
    for followed in files:
        followed.open()
    try:
        while True:
            yield [followed.poll() for followed in files]
            for followed in files:
                for note in followed.notes:
                    on_note(note)
                followed.notes.clear()
            if should_stop():
                return
            on_idle()
            time.sleep(interval)
    finally:
        for followed in files:
            with contextlib.suppress(OSError):
                followed.close()


def follow(paths: list[str], *, interval: float = 0.25,
           should_stop: Callable[[], bool] = lambda: False,
           on_idle: Callable[[], None] = lambda: None,
           on_note: Callable[[str], None] = lambda note: None) -> Iterator[tuple[int, bytes]]:
    """(index of the path, line) for every line of the files, now and as they grow,
    one file after the other in each round (see `follow_rounds`)."""
    for lines_by_path in follow_rounds(paths, interval=interval, should_stop=should_stop,
                                       on_idle=on_idle, on_note=on_note):
        for index, lines in enumerate(lines_by_path):
            for line in lines:
                yield index, line
