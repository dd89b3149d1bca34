"""FrameTracker: frame boundaries found by length arithmetic, however the stream is cut."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from wsgate.edge.frames import FrameTracker


def frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = False) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([m | 127]) + n.to_bytes(8, "big")
    if mask:
        key = os.urandom(4)
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


FRAMES = st.lists(st.tuples(st.sampled_from([0x0, 0x1, 0x2, 0x9, 0xA]),
                            st.sampled_from([0, 1, 125, 126, 127, 300, 65535, 65536, 70000])),
                  min_size=1, max_size=8)


@settings(max_examples=150, deadline=None)
@given(FRAMES, st.lists(st.integers(min_value=1, max_value=70000), max_size=30),
       st.booleans())
def test_boundaries_under_any_split(spec: list[tuple[int, int]], cuts: list[int],
                                    mask: bool) -> None:
    frames = [frame(op, b"p" * n, mask=mask) for op, n in spec]
    stream = b"".join(frames)
    ends = set()
    pos = 0
    for f in frames:
        pos += len(f)
        ends.add(pos)
    points = sorted({c % len(stream) for c in cuts} | {len(stream)})
    tracker = FrameTracker()
    start = 0
    for point in points:
        if point <= start:
            continue
        tracker.feed(stream[start:point])
        start = point
        assert tracker.at_boundary == (point in ends), (point, sorted(ends))
    assert tracker.at_boundary and not tracker.closed


def test_close_code_masked_and_unmasked_and_split() -> None:
    for mask in (False, True):
        t = FrameTracker()
        data = frame(0x1, b"hi", mask=mask) + frame(0x8, (4001).to_bytes(2, "big") + b"bye",
                                                     mask=mask)
        t.feed(data)
        assert t.closed and t.close_code == 4001 and t.at_boundary
    t = FrameTracker()
    data = frame(0x8, b"")
    t.feed(data[:1])
    assert not t.at_boundary
    t.feed(data[1:])
    assert t.closed and t.close_code == 1005 and t.at_boundary


def test_fragmented_message_with_interleaved_control_frames() -> None:
    t = FrameTracker()
    stream = (frame(0x1, b"frag", fin=False) + frame(0x9, b"ping") + frame(0x0, b"ment")
              + frame(0xA, b"") + frame(0x0, b"ed"))
    for i in range(len(stream)):
        t.feed(stream[i:i + 1])
    assert t.at_boundary
