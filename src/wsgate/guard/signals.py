"""`wsgate run` stops on SIGINT and SIGTERM in every case, a pipe included.

Streamlit's own handler prints "Stopping..." to stdout *before* it stops the
server. Under `wsgate run app.py | tee origin.log`, a terminal's Ctrl-C ends
`tee` too; the print then raises BrokenPipeError inside the handler, the stop
never happens, and the origin keeps serving while every further signal fails
the same way. Here the stop survives a broken output, and a second signal ends
the process at once whatever the first one is still waiting for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Final

from wsgate.i18n import _

STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


def output_is_broken(fd: int) -> bool:
    """True when `fd` is a pipe or socket whose reader is gone (writes would fail)."""
    if not hasattr(select, "poll"):
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    try:
        events = poller.poll(0)
    except OSError:
        return True
    return any(mask & (select.POLLERR | select.POLLHUP | select.POLLNVAL)
               for _, mask in events)


def detach_broken_outputs() -> list[int]:
    """Point stdout/stderr at /dev/null where their reader is gone; returns those fds.

    Buffered text still waiting in sys.stdout is then flushed into /dev/null
    instead of failing again at the next print or at interpreter exit.
    """
    detached = []
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream in (sys.stdout, sys.stderr):
            try:
                fd = stream.fileno()
            except (AttributeError, OSError, ValueError):
                continue
            if output_is_broken(fd):
                os.dup2(devnull, fd)
                detached.append(fd)
    finally:
        os.close(devnull)
    return detached


def stop_despite_broken_output(stop: Callable[[], None]) -> None:
    """Run `stop`; if it fails on a broken stdout/stderr, detach those and retry."""
    try:
        stop()
    except OSError:
        detach_broken_outputs()
        stop()


def tolerate_broken_pipes(logger: logging.Logger) -> None:
    """A log line written after the reader of stdout went away (`| tee` ended by the
    same Ctrl-C) is dropped quietly, and stdout is pointed at /dev/null, instead of
    `logging` printing a traceback to stderr for it and for every line after it."""
    for handler in logger.handlers:
        default = handler.handleError

        def handle_error(record: logging.LogRecord,
                         default: Callable[[logging.LogRecord], None] = default) -> None:
            if isinstance(sys.exc_info()[1], BrokenPipeError):
                detach_broken_outputs()
                return
            default(record)

        setattr(handler, "handleError", handle_error)  # noqa: B010 - on this instance only


def install_stop_handlers(stop: Callable[[], None] | None) -> None:
    """SIGINT/SIGTERM: the first one runs `stop` (graceful), a second exits at once.

    With `stop=None` (the server is not up yet, nothing to drain) the first signal
    exits at once too, instead of a KeyboardInterrupt unwinding a half-started
    server with a page of tracebacks. The graceful stop runs on the event loop: a
    signal handler may interrupt a buffered console write, and printing from
    inside it could fail as a reentrant call.
    """
    received: list[int] = []
    # Looked up now: the handler itself only writes.
    second_signal = "wsgate run: " + _("second signal, exiting now") + "\n"

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if stop is None or len(received) > 1:
            if stop is not None:  # the user asked twice: do not wait for sessions
                with contextlib.suppress(OSError, ValueError):
                    sys.stderr.write(second_signal)
                    sys.stderr.flush()
            os._exit(128 + signum)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            stop_despite_broken_output(stop)
        else:
            loop.call_soon_threadsafe(stop_despite_broken_output, stop)

    for signum in STOP_SIGNALS:
        signal.signal(signum, handler)
