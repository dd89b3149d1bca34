"""WebSocket frame boundaries in a relayed byte stream, by length arithmetic.

The tunnel never decodes payloads. To insert its own frames (keepalive ping, close
1001/1011) the edge must know where one frame ends and the next begins; this tracker
follows frame headers only: a chunk that lies inside a payload costs one comparison,
and each frame header costs a few integer operations. Close frames are noticed
(opcode 8) so the session log can name the close code.
"""

from __future__ import annotations


class FrameTracker:
    __slots__ = ("close_code", "closed", "partial", "remaining")

    def __init__(self) -> None:
        self.remaining = 0  # payload bytes of the current frame still to come
        self.partial = b""  # a frame header split across chunks (at most 13 bytes)
        self.closed = False  # a close frame has passed
        self.close_code: int | None = None

    @property
    def at_boundary(self) -> bool:
        return self.remaining == 0 and not self.partial

    def feed(self, data: bytes) -> None:
        n = len(data)
        i = self.remaining
        if i >= n and not self.partial:
            self.remaining = i - n  # inside a payload: the common case for big messages
            return
        if self.partial:
            # Rare: a header split across chunks; glue at most one header's worth.
            k = len(self.partial)
            glued = self.partial + data[:14]
            self.partial = b""
            j = self._frame_end(glued, 0)
            if j < 0:
                self.partial = glued  # n < 14 here, so glued holds all of data
                return
            i = j - k
        while i < n:
            # Inline fast path for the common frame (server → client: unmasked, length
            # under 126, not a close): two byte reads and an add, no call. With many
            # small messages per chunk this loop is the tunnel's main Python cost.
            if i + 1 < n:
                b1 = data[i + 1]
                if b1 < 126 and data[i] & 0x0F != 0x8:
                    i += 2 + b1
                    continue
            j = self._frame_end(data, i)
            if j < 0:
                self.partial = data[i:]
                self.remaining = 0
                return
            i = j
        self.remaining = i - n

    def _frame_end(self, buf: bytes, i: int) -> int:
        """Offset just past the frame starting at `i`, or -1 if its header is incomplete."""
        avail = len(buf) - i
        if avail < 2:
            return -1
        b1 = buf[i + 1]
        length = b1 & 0x7F
        head = 2
        if length == 126:
            head = 4
            if avail < 4:
                return -1
            length = int.from_bytes(buf[i + 2:i + 4], "big")
        elif length == 127:
            head = 10
            if avail < 10:
                return -1
            length = int.from_bytes(buf[i + 2:i + 10], "big")
        if b1 & 0x80:
            head += 4
        if avail < head:
            return -1
        if buf[i] & 0x0F == 0x8:
            self._note_close(buf, i, head, length, bool(b1 & 0x80))
        return i + head + length

    def _note_close(self, buf: bytes, i: int, head: int, length: int, masked: bool) -> None:
        if self.closed:
            return
        self.closed = True
        if length == 0:
            self.close_code = 1005  # "no status received"
        elif len(buf) >= i + head + 2:
            code = buf[i + head:i + head + 2]
            if masked:
                mask = buf[i + head - 4:i + head - 2]
                code = bytes((code[0] ^ mask[0], code[1] ^ mask[1]))
            self.close_code = int.from_bytes(code, "big")
