"""The HTTP legs' transport glue: an asyncio Protocol that queues received bytes for
one reader coroutine, with flow control both ways.

Bytes are parsed only when the reader asks for them, so bytes of a pipelined
request wait here untouched, and after a 101 whatever is still queued is handed to
the tunnel as it arrived. Reading pauses when more than `high_water` bytes wait,
and writers `await drain()` while the transport's write buffer is above its limit:
memory per connection stays bounded whatever the peers do.
"""

from __future__ import annotations

import asyncio
from typing import cast


class PeerGone(ConnectionError):
    """The peer closed the connection while we were waiting on it."""


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class StreamProtocol(asyncio.Protocol):
    def __init__(self, high_water: int, loop: asyncio.AbstractEventLoop | None = None) -> None:
        # Kept, and passed in by callers that have it: in Python 3.11 every
        # get_running_loop() is a getpid() system call.
        self.loop = loop if loop is not None else asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.high_water = high_water
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.nbytes = 0  # total received, to tell "closed before answering" apart
        self.eof = False
        self.lost = False
        self.read_paused = False
        self.write_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(self.high_water)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        self.nbytes += len(data)
        if self.buffered > self.high_water and not self.read_paused and self.transport:
            self.read_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return True  # keep the transport open: a response may still be written

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.eof = True
        self._wake()
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_exception(PeerGone("connection lost while writing"))
        self._drain = None

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)
        self._drain = None

    # helpers for the reader coroutine
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take(self) -> bytes:
        """Everything queued, as one bytes object; resumes reading."""
        chunks = self.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []
        self.buffered = 0
        if self.read_paused and self.transport is not None and not self.lost:
            self.read_paused = False
            self.transport.resume_reading()
        return data

    def interrupt(self, exc: BaseException) -> None:
        """Make a pending `wait_data` raise `exc` (the other side of the exchange is gone)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def unread(self, data: bytes) -> None:
        """Put bytes back at the front of the queue (they belong to what comes next)."""
        self.chunks.insert(0, data)
        self.buffered += len(data)

    async def wait_data(self, within: float | None = None) -> None:
        """Until bytes or EOF arrive; TimeoutError after `within` seconds. One timer
        handle per wait, and none when bytes are already queued: cheaper than
        `asyncio.timeout()` (~5 µs per use) on a path taken once or twice a request."""
        if self.chunks or self.eof:
            return
        loop = self.loop
        waiter = loop.create_future()
        self._waiter = waiter
        timer = None if within is None else loop.call_later(within, _expire, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.lost:
            self.transport.write(data)

    def writelines(self, data: list[bytes]) -> None:
        """Several pieces in one system call (a response head and its first body bytes)."""
        if self.transport is not None and not self.lost:
            self.transport.writelines(data)

    async def drain(self, within: float | None = None) -> None:
        """Until the write buffer is below its limit; TimeoutError after `within` s."""
        if self.lost:
            raise PeerGone("connection lost")
        if not self.write_paused:
            return
        loop = self.loop
        if self._drain is None:
            self._drain = loop.create_future()
        timer = None if within is None else loop.call_later(within, _expire, self._drain)
        try:
            await self._drain
        finally:
            if timer is not None:
                timer.cancel()
            if self._drain is not None and self._drain.done():
                self._drain = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
