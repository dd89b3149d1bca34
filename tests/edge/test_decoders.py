"""Head finding and body decoders: any split of the input gives the result of one feed.

The edge reads bytes as the kernel hands them over, so a rule that depends on where
a read ends would be a bug that only a slow network shows. Each decoder is fed the
same bytes in arbitrary pieces and must give the same payload, leftover and state
(or the same refusal) as when fed in one piece.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsgate.edge import exchange as xc
from wsgate.edge.http1 import (
    BadMessage,
    BodyDecoder,
    Framing,
    chunk,
    decoder_for,
    parse_request_head,
)

payloads = st.lists(st.binary(min_size=1, max_size=64), max_size=6)
tails = st.binary(max_size=20)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def run(framing: Framing, length: int, pieces: list[bytes]) -> tuple[bytes, bytes, bool] | str:
    """(payload, leftover, done) after feeding `pieces`, or the refusal's message."""
    decoder: BodyDecoder = decoder_for(framing, length)
    out: list[bytes] = []
    leftover = b""
    try:
        for piece in pieces:
            if decoder.done:
                leftover += piece
                continue
            leftover += decoder.feed(piece, out)
    except BadMessage as exc:
        return str(exc)
    return b"".join(out), leftover, decoder.done


def chunked(parts: list[bytes], trailers: bytes = b"") -> bytes:
    return b"".join(chunk(p) for p in parts) + b"0\r\n" + trailers + b"\r\n"


@given(parts=payloads, tail=tails, cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_chunked_any_split(parts: list[bytes], tail: bytes, cuts: list[int]) -> None:
    data = chunked(parts, b"X-Trailer: dropped\r\n") + tail
    whole = run("chunked", 0, [data])
    assert whole == (b"".join(parts), tail, True)  # trailers are read and dropped
    assert run("chunked", 0, split(data, cuts)) == whole


@given(body=st.binary(max_size=300), tail=tails, cuts=st.lists(st.integers(0, 10_000),
                                                                 max_size=8))
def test_length_any_split(body: bytes, tail: bytes, cuts: list[int]) -> None:
    data = body + tail
    whole = run("length", len(body), [data])
    assert whole == (body, tail, True)
    assert run("length", len(body), split(data, cuts)) == whole


@given(body=st.binary(max_size=300), cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_until_close_takes_everything(body: bytes, cuts: list[int]) -> None:
    assert run("close", 0, split(body, cuts)) == (body, b"", False)
    assert decoder_for("close").ends_at_eof


@given(parts=payloads, cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_decoders_agree_on_the_payload(parts: list[bytes], cuts: list[int]) -> None:
    body = b"".join(parts)
    by_length = run("length", len(body), split(body, cuts))
    by_chunks = run("chunked", 0, split(chunked(parts), cuts))
    assert isinstance(by_length, tuple) and isinstance(by_chunks, tuple)
    assert by_length[0] == by_chunks[0] == body


@pytest.mark.parametrize("bad", [
    b"zz\r\nabc\r\n0\r\n\r\n",  # not hex
    b"3\r\nabcd\r\n0\r\n\r\n",  # data longer than its size
    b"1" * 5000,  # a size line past the limit
    b"0\r\nbad trailer\r\n\r\n",
])
@given(cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_chunked_refusals_do_not_depend_on_the_split(bad: bytes, cuts: list[int]) -> None:
    whole = run("chunked", 0, [bad])
    assert isinstance(whole, str)
    assert run("chunked", 0, split(bad, cuts)) == whole


def test_no_body_is_done_at_once() -> None:
    for framing in ("none", "length"):
        decoder = decoder_for(framing, 0)  # type: ignore[arg-type]
        assert decoder.done and not decoder.ends_at_eof


heads = st.sampled_from([
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /p?q=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.1\nHost: a\n\n",  # bare LF: refused
    b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 40 + b"\r\n",  # past the limit: 431
])


@given(data=heads, cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_head_finding_any_split(data: bytes, cuts: list[int]) -> None:
    """Feeding bytes as they arrive finds the same head, or the same refusal, as one read."""
    def read(pieces: list[bytes]) -> tuple[bytes, bytes] | int:
        buf = b""
        try:
            for i, piece in enumerate(pieces):
                buf += piece
                end = xc.find_head(buf, 200)
                if end >= 0:
                    parse_request_head(buf[:end])
                    return buf[:end], buf[end + 4:] + b"".join(pieces[i + 1:])
        except BadMessage as exc:
            return exc.status
        return -1

    assert read(split(data, cuts)) == read([data])
