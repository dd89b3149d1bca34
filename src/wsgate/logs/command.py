"""`wsgate logs`: one view of edge and origin logs (wsgate, Cloud Logging, wrangler)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import IO, Any

import click

from wsgate.i18n import _
from wsgate.logs.follow import follow_rounds
from wsgate.logs.join import Group, join
from wsgate.logs.model import Event, EventPredicate
from wsgate.logs.query import Query, QueryError, build_query
from wsgate.logs.reader import DocumentReader, ReadStats, merge_by_time, read_events
from wsgate.logs.render import json_line, pretty_group, pretty_line, summary_text
from wsgate.logs.summary import Summary, summarise

EXIT_INPUT = 1  # an input file could not be read
EXIT_INTERRUPTED = 130
READ_BUFFER = 1 << 20  # fewer read calls on big files


LOGS_HELP = _("""Filter, join and summarise edge and origin logs.

Reads each PATH (stdin when there is none, or for "-"): wsgate's JSON lines, Google
Cloud Logging exports (`gcloud logging read --format json`) and `wrangler tail
--format json` output, mixed freely. Several PATHs make one timeline, merged by time.

\b
Examples:
  wsgate logs edge.log origin.log --since 1h --status error
  wsgate logs edge.log origin.log --status 403 --join   # the edge's 403, the origin's reason
  wsgate logs edge.log origin.log --summary             # counts, latency, refusal reasons
  wsgate logs --follow edge.log origin.log --websocket
  wrangler tail PROXY --format json | wsgate logs --status error

\b
Environment:
  NO_COLOR  set: no colour in pretty output, unless --color
  TERM      "dumb": no colour in pretty output, unless --color

\b
Exit status:
  0    done, also when nothing matched or the reader of a pipe went away
  1    a PATH cannot be read
  2    usage error (an unknown option, or a value it cannot read)
  130  interrupted (Ctrl-C)
""")


@click.command("logs", help=LOGS_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@click.option("--status", multiple=True, metavar="ok|error|canceled|Nxx|NNN",
              help=_("Keep events with this outcome or HTTP status (repeatable: any of them)."))
@click.option("--since", metavar="DURATION|TIME",
              help=_("Keep events at or after this time: a duration ago (30m, 1h, 2d) or an "
                     "ISO time (2026-11-26T10:00:00Z)."))
@click.option("--until", metavar="DURATION|TIME",
              help=_("Keep events at or before this time (same forms as --since)."))
@click.option("--websocket", is_flag=True, help=_("Keep WebSocket upgrades and sessions only."))
@click.option("--method", multiple=True, metavar="METHOD", help=_("HTTP method (repeatable)."))
@click.option("--ip", multiple=True, metavar="ADDRESS|NETWORK",
              help=_("Client address or network such as 10.0.0.0/8 (repeatable)."))
@click.option("--header", multiple=True, metavar="NAME[:VALUE]",
              help=_("Request header present, or containing VALUE (repeatable: all of them)."))
@click.option("--search", metavar="TEXT",
              help=_("Case-insensitive text in message, error, URL, request id, Worker logs."))
@click.option("--request-id", multiple=True, metavar="ID", help=_("X-Request-Id (repeatable)."))
@click.option("--severity", metavar="LEVEL",
              help=_("Minimum severity: DEBUG INFO NOTICE WARNING ERROR CRITICAL ..."))
@click.option("-f", "--follow", "follow_", is_flag=True,
              help=_("Keep reading the PATHs as they grow (survives rotation and truncation)."))
@click.option("--format", "fmt", type=click.Choice(["pretty", "json"]), default=None,
              show_default=_("pretty on a terminal, json in a pipe"), help=_("Output format."))
@click.option("--color/--no-color", "colour", default=None,
              show_default=_("on a terminal, unless NO_COLOR is set or TERM=dumb"),
              help=_("Colour the pretty output."))
@click.option("--join", "join_", is_flag=True,
              help=_("Group edge and origin events sharing a request id into one entry."))
@click.option("--summary", is_flag=True,
              help=_("Print counts, close codes, latency percentiles and errors by reason."))
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N",
              show_default=_("no limit"), help=_("Stop after N entries."))
def logs(paths: tuple[str, ...], follow_: bool, fmt: str | None, colour: bool | None,
         join_: bool, summary: bool, limit: int | None, **filters: Any) -> None:
    """`wsgate logs`; its help is LOGS_HELP."""
    query = _query(filters)
    inputs = _checked_paths(list(paths) or ["-"], follow=follow_, join=join_,
                            summary=summary)
    out = Output(fmt, colour)
    stats = ReadStats()
    try:
        if follow_:
            events = _followed_events(inputs, stats, query, out.flush)
        else:
            # --join over stdin reads it once: every event may belong to a matching group.
            events = _read(inputs, stats, None if join_ and "-" in inputs else query)
        if summary:
            out.summary(summarise(events, query))
        elif join_:
            out.groups(_joined(events, query, inputs), limit)
        else:
            out.events(_matching(events, query), limit)
        out.flush()
    except BrokenPipeError:
        out.reader_left()
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):
            out.flush()  # what was found so far
        _report(stats)
        sys.exit(EXIT_INTERRUPTED)
    except OSError as exc:
        where = exc.filename or _("input")
        click.echo(f"wsgate logs: {where}: {exc.strerror or exc}", err=True)
        sys.exit(EXIT_INPUT)
    _report(stats)


def _query(filters: dict[str, Any]) -> Query:
    try:
        return build_query(**filters)
    except QueryError as exc:
        raise click.UsageError(str(exc)) from None


def _checked_paths(paths: list[str], *, follow: bool, join: bool, summary: bool) -> list[str]:
    """The PATHs to read, after the checks that need no reading (exit 2 or 1)."""
    if join and summary:
        raise click.UsageError(_("--join and --summary are separate views: choose one"))
    if follow and (join or summary):
        raise click.UsageError(_("--follow cannot be combined with --join or --summary"))
    if follow and "-" in paths:
        raise click.UsageError(_("--follow needs PATH arguments (stdin is read to its end)"))
    if not follow:  # a followed PATH may appear later
        for path in paths:
            if path != "-" and not os.path.isfile(path):
                problem = _("not a file") if os.path.exists(path) else _("no such file")
                click.echo(f"wsgate logs: {path}: {problem}", err=True)
                sys.exit(EXIT_INPUT)
    return paths


def _lines_of(path: str) -> Iterator[bytes]:
    if path == "-":
        yield from sys.stdin.buffer
        return
    with open(path, "rb", buffering=READ_BUFFER) as handle:
        yield from handle


def _read(paths: list[str], stats: ReadStats, query: Query | None,
          quick_check: EventPredicate | None = None) -> Iterator[Event]:
    """The events of every path as one timeline; with a query, lines that cannot match
    may be skipped early (the caller still applies the query to every event)."""
    prefilter = query.prefilter() if query is not None else None
    if query is not None:
        quick_check = query.quick_check()
    return merge_by_time([read_events(_lines_of(path), stats, prefilter, quick_check)
                          for path in paths])


def _followed_events(paths: list[str], stats: ReadStats, query: Query,
                     flush: Callable[[], None]) -> Iterator[Event]:
    """What the PATHs hold, then what is added to them, each round merged by time."""
    readers = [DocumentReader(stats) for _ in paths]
    prefilter, quick_check = query.prefilter(), query.quick_check()

    def note(text: str) -> None:
        click.echo(f"wsgate logs: {text}", err=True)

    for lines_by_path in follow_rounds(paths, on_idle=flush, on_note=note):
        yield from merge_by_time([
            read_events(lines, stats, prefilter, quick_check, reader=reader)
            for lines, reader in zip(lines_by_path, readers, strict=True)])


def _matching(events: Iterable[Event], query: Query) -> Iterator[Event]:
    matches = query.matches
    return (event for event in events if matches(event))


def _joined(events: Iterable[Event], query: Query, paths: list[str]) -> list[Group]:
    # Files are read twice (matching ids, then their events) to keep memory to the
    # result; stdin can be read once only, so it is held whole.
    if "-" in paths:
        return join(events, query)
    return join(events, query, lambda wanted: _read(
        paths, ReadStats(), None, lambda event: event.get("requestId") in wanted))


def _use_colour(colour: bool | None, out: IO[str]) -> bool:
    if colour is not None:
        return colour
    return out.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


class Output:
    """stdout for entries: JSON lines in a pipe, aligned (coloured) lines on a terminal."""

    def __init__(self, fmt: str | None, colour: bool | None) -> None:
        self.as_json = fmt == "json" or (fmt is None and not sys.stdout.isatty())
        self.colour = _use_colour(colour, sys.stdout) and not self.as_json
        self.stream = _buffered_stdout()  # bytes: JSON as orjson makes it

    def events(self, events: Iterable[Event], limit: int | None) -> None:
        for event in islice(events, limit):
            if self.as_json:
                self.stream.write(json_line(event))
            else:
                self._text(pretty_line(event, self.colour))

    def groups(self, groups: Iterable[Group], limit: int | None) -> None:
        for group in islice(groups, limit):
            if self.as_json:
                self.stream.write(json_line(group.as_json()))
            else:
                self._text("\n".join(pretty_group(group, self.colour)))

    def summary(self, summary: Summary) -> None:
        if self.as_json:
            self.stream.write(json_line(summary.as_json()))
        else:
            self._text(summary_text(summary, self.colour))

    def _text(self, text: str) -> None:
        self.stream.write(text.encode("utf-8", "replace") + b"\n")

    def flush(self) -> None:
        self.stream.flush()

    def reader_left(self) -> None:
        """`wsgate logs big.log | head`: the reader left; stop quietly like other tools."""
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)


def _buffered_stdout() -> IO[bytes]:
    """stdout with a real buffer even under PYTHONUNBUFFERED=1: a system call per event
    would cost more than reading the event."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # stdout replaced by something else
        return sys.stdout.buffer
    sys.stdout.flush()
    return open(fd, "wb", buffering=1 << 16, closefd=False)


def _report(stats: ReadStats) -> None:
    text = stats.describe()
    if text:
        click.echo(f"wsgate logs: {text}", err=True)
