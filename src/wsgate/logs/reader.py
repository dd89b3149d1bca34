"""From raw lines to normalised events, and several inputs into one timeline.

Input is bytes, line by line, formats mixed freely: one JSON document per line (what
wsgate and most exports write) or documents spread over many lines (`gcloud logging read
--format json` prints one pretty-printed array; `wrangler tail --format json` pretty-
prints each event). Bad input never raises: a line that is not JSON or a value that is
no log event is counted in `ReadStats` and skipped. Blank lines are no input at all.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Final

import orjson

from wsgate.i18n import _
from wsgate.logs.formats import detect
from wsgate.logs.model import Event, EventPredicate, LinePredicate, time_key

# A multi-line document larger than this is given up (its lines counted as bad), so a
# stray "{" cannot make the reader hold a whole file in memory.
MAX_DOCUMENT_CHARS: Final = 8 * 1024 * 1024


@dataclass
class ReadStats:
    """What the readers skipped; reported once at the end of a run."""

    documents: int = 0
    not_json: int = 0  # non-blank lines that are not (part of) a JSON document
    not_event: int = 0  # JSON values that are not a log event of a known shape

    @property
    def skipped(self) -> int:
        return self.not_json + self.not_event

    def describe(self) -> str | None:
        if not self.skipped:
            return None
        parts = []
        if self.not_json:
            parts.append(_("{count} not JSON").format(count=self.not_json))
        if self.not_event:
            parts.append(_("{count} not a log event").format(count=self.not_event))
        return _("skipped {count} unparseable input(s): {parts}").format(
            count=self.skipped, parts=", ".join(parts))


_DECODER: Final = json.JSONDecoder()
_VALUE_STARTS: Final = frozenset('{["-0123456789tfn')


class DocumentReader:
    """Turns lines into JSON values: one per line on the fast path, or documents spread
    over many lines (pretty-printed objects, arrays of LogEntry) decoded incrementally,
    one array element at a time so a large `gcloud` export never sits in memory whole.
    """

    def __init__(self, stats: ReadStats) -> None:
        self.stats = stats
        self._buffer = ""
        self._lines = 0  # non-blank lines in the buffer, counted as bad if it never decodes
        self._in_array = False

    def feed(self, raw: bytes) -> Iterator[object]:
        line = raw.decode("utf-8", "replace")
        if self.idle():
            return self._start(line)
        return self._continue(line)

    def idle(self) -> bool:
        """True between documents (no multi-line document under way)."""
        return not self._buffer and not self._in_array

    def finish(self) -> None:
        """End of input: whatever is still buffered never became a document."""
        if self._buffer.strip() or self._in_array:
            self._give_up()
        self._buffer, self._lines, self._in_array = "", 0, False

    def _start(self, line: str) -> Iterator[object]:
        """A line between documents: a whole document, or the first line of one."""
        text = line.strip()
        if not text:
            return  # blank lines separate documents
        first = text[0]
        if first == "{" and text[-1] == "}":
            try:
                value = json.loads(text)
            except (ValueError, RecursionError):
                pass  # maybe the first line of a pretty-printed object
            else:
                self.stats.documents += 1
                yield value
                return
        if first == "[":
            self._in_array = True
            self._buffer, self._lines = text[1:], 1
            yield from self._drain()
        elif first == "{":
            self._buffer, self._lines = line, 1
        else:
            self.stats.not_json += 1

    def _continue(self, line: str) -> Iterator[object]:
        """A line inside a multi-line document."""
        blank = not line.strip()
        # Pretty printers indent everything inside a document, so an unindented line
        # starts a new one: what is buffered was cut short (a crash mid-write, say).
        # Resynchronise here instead of swallowing the rest of the input.
        if (not blank and line[:1] not in (" ", "\t", "}", "]")
                and self._buffer.strip(" \t\r\n,")):
            self._give_up()
            yield from self._start(line)
            return
        self._buffer += line
        if not blank:
            self._lines += 1
        if line.rstrip().endswith(("}", "]", "},", "],")):
            yield from self._drain()
        if len(self._buffer) > MAX_DOCUMENT_CHARS:
            self._give_up()

    def _drain(self) -> Iterator[object]:
        """Every complete value at the start of the buffer."""
        while True:
            buf = self._buffer.lstrip()
            if self._in_array:
                buf = buf.lstrip(", \t\r\n")
                if buf.startswith("]"):
                    self._in_array = False
                    buf = buf[1:].lstrip()
                    if not buf:
                        self._buffer, self._lines = "", 0
                        return
            if not buf:
                self._buffer = ""
                if not self._in_array:
                    self._lines = 0
                return
            if not self._in_array and buf[0] == "[":
                self._in_array = True
                self._buffer = buf[1:]
                continue
            if buf[0] not in (_VALUE_STARTS if self._in_array else "{"):
                self._buffer = buf
                self._give_up()
                return
            try:
                value, end = _DECODER.raw_decode(buf)
            except RecursionError:
                self._buffer = buf
                self._give_up()  # nested too deep to be a log event
                return
            except ValueError:
                self._buffer = buf  # incomplete: wait for more lines
                return
            self._buffer = buf[end:]
            self._lines = 1 if self._buffer.strip() else 0
            self.stats.documents += 1
            yield value

    def _give_up(self) -> None:
        self.stats.not_json += max(self._lines, 1)
        self._buffer, self._lines, self._in_array = "", 0, False


def _to_event(value: object, stats: ReadStats,
              quick_check: EventPredicate | None) -> Event | None:
    fmt = detect(value)
    if fmt is None:
        stats.not_event += 1
        return None
    assert isinstance(value, dict)  # detect() said so
    event = fmt.quick(value)
    if quick_check is not None and not quick_check(event):
        return None
    return fmt.rest(event, value)


def read_events(lines: Iterable[bytes], stats: ReadStats,
                prefilter: LinePredicate | None = None,
                quick_check: EventPredicate | None = None, *,
                reader: DocumentReader | None = None) -> Iterator[Event]:
    """Normalised events from raw lines of one input.

    Two optional shortcuts, both only necessary conditions for an event to be wanted
    (the caller still applies its full filter to what comes out):
    - `prefilter` sees a raw single-line document (e.g. "the --search text occurs in
      it"); lines failing it are skipped without JSON decoding;
    - `quick_check` sees an event holding only its QUICK_FIELDS; events failing it are
      dropped before the rest of the normalisation.
    Multi-line documents skip the prefilter (it would see one line of them).
    `reader`: a DocumentReader kept across calls (a followed file read in rounds; its
    input has no end, so it is not finished here).
    """
    documents = reader or DocumentReader(stats)
    loads = orjson.loads
    for raw in lines:
        if documents.idle():
            # Fast path, one whole object per line: no generator, and with a prefilter
            # a line that cannot match is not decoded at all (so not checked for being
            # valid JSON either).
            stripped = raw.strip()
            if stripped[:1] == b"{" and stripped[-1:] == b"}":
                if prefilter is not None and not prefilter(stripped):
                    continue
                try:
                    value = loads(stripped)
                except orjson.JSONDecodeError:
                    # orjson is stricter than the standard library (invalid UTF-8, NaN,
                    # integers beyond 64 bits, lone surrogates, deep nesting): the
                    # lenient reader below decides what such a line is.
                    pass
                else:
                    stats.documents += 1
                    event = _to_event(value, stats, quick_check)
                    if event is not None:
                        yield event
                    continue
        for value in documents.feed(raw):
            event = _to_event(value, stats, quick_check)
            if event is not None:
                yield event
    if reader is None:
        documents.finish()


def merge_by_time(streams: Sequence[Iterable[Event]]) -> Iterator[Event]:
    """One timeline from several inputs, each in time order (as wsgate and wrangler
    write them; `gcloud logging read` needs `--order asc`): streamed, holding one event
    per input. An event without a time keeps its place after its predecessor in its
    own input; an input running backwards in time is passed through in its own order
    (its events wait for the latest time seen in it), never reordered."""
    if len(streams) == 1:
        return iter(streams[0])
    keyed = [_with_time_keys(stream) for stream in streams]
    return map(itemgetter(1), heapq.merge(*keyed, key=itemgetter(0)))


def _with_time_keys(events: Iterable[Event]) -> Iterator[tuple[str, Event]]:
    """(key, event): the latest time key seen so far in this input, so the keys never
    go down, which is what a merge of sorted inputs needs to stay a merge."""
    latest = ""
    for event in events:
        timestamp = event.get("timestamp")
        if isinstance(timestamp, str):
            key = time_key(timestamp)
            if key > latest:
                latest = key
        yield latest, event
