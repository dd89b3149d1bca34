"""`wsgate logs`: one view of edge and origin logs (wsgate, Cloud Logging, wrangler)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import IO

import click

from wsgate.logs.follow import follow
from wsgate.logs.join import join, summarise
from wsgate.logs.query import Query, QueryError, build_query
from wsgate.logs.render import json_line, pretty_group, pretty_line, summary_text
from wsgate.logs.sources import (
    DocumentReader,
    Event,
    EventPredicate,
    ReadStats,
    normalise,
    read_events,
)

EXIT_INPUT = 1  # an input file could not be read
READ_BUFFER = 1 << 20  # fewer read calls on big files


def _lines_of(path: str) -> Iterator[bytes]:
    if path == "-":
        yield from sys.stdin.buffer
        return
    with open(path, "rb", buffering=READ_BUFFER) as handle:
        yield from handle


def _events(paths: list[str], query: Query | None, stats: ReadStats,
            quick_check: EventPredicate | None = None) -> Iterator[Event]:
    """Events of every path; with a query, lines that cannot match may be skipped early
    (the caller still applies the query to every event it gets)."""
    prefilter = query.prefilter() if query is not None else None
    if query is not None:
        quick_check = query.quick_check()
    for path in paths:
        yield from read_events(_lines_of(path), stats, prefilter, quick_check)


def _stdout() -> IO[bytes]:
    """stdout with a real buffer even under PYTHONUNBUFFERED=1: a system call per event
    would cost more than reading the event."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # stdout replaced by something else
        return sys.stdout.buffer
    sys.stdout.flush()
    return open(fd, "wb", buffering=1 << 16, closefd=False)


def _followed_events(paths: list[str], stats: ReadStats,
                     flush: Callable[[], None]) -> Iterator[Event]:
    readers = [DocumentReader(stats) for _ in paths]

    def note(text: str) -> None:
        click.echo(f"wsgate logs: {text}", err=True)

    for index, line in follow(paths, on_idle=flush, on_note=note):
        for value in readers[index].feed(line):
            event = normalise(value)
            if event is None:
                stats.not_event += 1
            else:
                yield event


def _use_colour(colour: bool | None, out: IO[str]) -> bool:
    if colour is not None:
        return colour
    return out.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


@click.command("logs", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("files", nargs=-1, metavar="[FILE]...")
@click.option("--status", multiple=True, metavar="ok|error|canceled|4xx|5xx|NNN",
              help="Keep events with this outcome or HTTP status (repeatable: any of them).")
@click.option("--since", metavar="1h|30m|ISO",
              help="Keep events at or after this time (a duration means that long ago).")
@click.option("--until", metavar="1h|30m|ISO", help="Keep events at or before this time.")
@click.option("--websocket", is_flag=True, help="Keep WebSocket upgrades and sessions only.")
@click.option("--method", multiple=True, metavar="METHOD", help="HTTP method (repeatable).")
@click.option("--ip", multiple=True, metavar="ADDR|CIDR",
              help="Client address or network (repeatable).")
@click.option("--header", multiple=True, metavar="NAME[:VALUE]",
              help="Request header present, or containing VALUE (repeatable: all of them).")
@click.option("--search", metavar="TEXT",
              help="Case-insensitive text in message, error, URL, request id, Worker logs.")
@click.option("--request-id", multiple=True, metavar="ID", help="X-Request-Id (repeatable).")
@click.option("--severity", metavar="LEVEL",
              help="Minimum severity: DEBUG INFO NOTICE WARNING ERROR CRITICAL ...")
@click.option("-f", "--follow", "follow_", is_flag=True,
              help="Keep reading files as they grow (survives rotation and truncation).")
@click.option("--format", "fmt", type=click.Choice(["pretty", "json"]), default=None,
              help="pretty (default on a terminal) or json (default in a pipe).")
@click.option("--color/--no-color", "colour", default=None,
              help="Colour pretty output (default: on a terminal, unless NO_COLOR is set).")
@click.option("--join", "join_", is_flag=True,
              help="Group edge and origin events sharing a request id into one entry.")
@click.option("--summary", is_flag=True,
              help="Print counts, close codes, latency percentiles and top errors.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Stop after this many entries.")
def logs(files: tuple[str, ...], status: tuple[str, ...], since: str | None,
         until: str | None, websocket: bool, method: tuple[str, ...], ip: tuple[str, ...],
         header: tuple[str, ...], search: str | None, request_id: tuple[str, ...],
         severity: str | None, follow_: bool, fmt: str | None, colour: bool | None,
         join_: bool, summary: bool, limit: int | None) -> None:
    """Filter, join and summarise edge and origin logs.

    Reads FILEs (or stdin when none or "-"): wsgate's JSON lines, Google Cloud Logging
    exports (`gcloud logging read --format json`) and `wrangler tail --format json`
    output, mixed freely.
    """
    try:
        query = build_query(status=status, since=since, until=until, websocket=websocket,
                            method=method, ip=ip, header=header, search=search,
                            request_id=request_id, severity=severity)
    except QueryError as exc:
        raise click.UsageError(str(exc)) from None
    if join_ and summary:
        raise click.UsageError("--join and --summary are separate views: choose one")
    if follow_ and (join_ or summary):
        raise click.UsageError("--follow cannot be combined with --join or --summary")
    paths = list(files) or ["-"]
    if follow_ and "-" in paths:
        raise click.UsageError("--follow needs FILE arguments (stdin is read to its end)")
    if not follow_:
        for path in paths:
            if path != "-" and not os.path.isfile(path):
                problem = "not a file" if os.path.exists(path) else "no such file"
                click.echo(f"wsgate logs: {path}: {problem}", err=True)
                sys.exit(EXIT_INPUT)

    as_json = fmt == "json" or (fmt is None and not sys.stdout.isatty())
    use_colour = _use_colour(colour, sys.stdout) and not as_json
    out = _stdout()  # bytes: JSON as orjson makes it, text encoded by `write_text`

    def write_text(text: str) -> None:
        out.write(text.encode("utf-8", "replace") + b"\n")
    stats = ReadStats()
    if follow_:
        events = _followed_events(paths, stats, out.flush)
    elif join_ and "-" in paths:
        # One pass over stdin: every event may belong to a matching group, none skipped.
        events = _events(paths, None, stats)
    else:
        events = _events(paths, query, stats)
    written = 0
    try:
        if summary:
            result = summarise(events, query)
            if as_json:
                out.write(json_line(result.as_json()))
            else:
                write_text(summary_text(result, use_colour))
        elif join_:
            # Files are read twice (matching ids, then their events) to keep memory
            # to the result; stdin can be read once only, so it is held whole.
            again = None if "-" in paths else (
                lambda wanted: _events(paths, None, ReadStats(),
                                       lambda e: e.get("requestId") in wanted))
            for group in join(events, query, again):
                if as_json:
                    out.write(json_line(group.as_json()))
                else:
                    write_text("\n".join(pretty_group(group, use_colour)))
                written += 1
                if limit is not None and written >= limit:
                    break
        else:
            matches = query.matches
            for event in events:
                if not matches(event):
                    continue
                if as_json:
                    out.write(json_line(event))
                else:
                    write_text(pretty_line(event, use_colour))
                written += 1
                if limit is not None and written >= limit:
                    break
        out.flush()
    except BrokenPipeError:
        # `wsgate logs big.log | head`: the reader left; stop quietly like other tools.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):
            out.flush()  # what was found so far
        _report(stats)
        sys.exit(130)
    except OSError as exc:
        click.echo(f"wsgate logs: {exc.filename or 'input'}: {exc.strerror or exc}", err=True)
        sys.exit(EXIT_INPUT)
    _report(stats)


def _report(stats: ReadStats) -> None:
    text = stats.describe()
    if text:
        click.echo(f"wsgate logs: {text}", err=True)
