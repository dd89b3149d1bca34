"""CPU time and RSS of a process and all its descendants, from /proc.

CPU is utime+stime from /proc/PID/stat (clock ticks, usually 10 ms), so each
measured phase is sized to cost a proxy many ticks. A process tree is read
fresh each time: nginx's master plus worker, the edge plus anything it forks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after it.
    return raw[raw.rindex(")") + 2:].split()


def descendants(root: int) -> list[int]:
    """root and every live process below it."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(name))
    tree = [root]
    for pid in tree:  # grows while iterating: breadth-first walk, bounded by /proc's size
        tree.extend(children.get(pid, []))
    return tree


def _run_ns(pid: int) -> int:
    """Nanoseconds on CPU of all threads, from schedstat (finer than stat's ticks)."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


def fd_count(pid: int) -> int:
    """Open file descriptors of one process."""
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass(frozen=True)
class Usage:
    cpu_s: float  # utime+stime of the whole tree (plus reaped children's), from stat
    user_s: float  # utime part (the process's own code: Python, h11, nginx's C)
    sys_s: float  # stime part (the kernel on its behalf: syscalls, TCP on loopback)
    sched_s: float  # the same time from schedstat, ns resolution: a cross-check
    rss_bytes: int
    pids: tuple[int, ...]


def usage(root: int) -> Usage:
    user_ticks = 0
    sys_ticks = 0
    run_ns = 0
    rss = 0
    pids = descendants(root)
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is None:
            continue
        # fields[0] is field 3 (state): utime=14, stime=15, cutime=16, cstime=17, rss=24
        user_ticks += int(fields[11]) + int(fields[13])
        sys_ticks += int(fields[12]) + int(fields[14])
        rss += int(fields[21]) * PAGE
        run_ns += _run_ns(pid)
    return Usage((user_ticks + sys_ticks) / CLK_TCK, user_ticks / CLK_TCK, sys_ticks / CLK_TCK,
                 run_ns / 1e9, rss, tuple(pids))
