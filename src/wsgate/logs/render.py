"""Output of `wsgate logs`: aligned, coloured lines for people; JSON lines for programs.

Colour is plain ANSI (no per-line `rich` rendering: a million lines must stay cheap).
"""

from __future__ import annotations

import json
from typing import Any, Final

import orjson

from wsgate.i18n import _
from wsgate.logs.join import Group
from wsgate.logs.model import SEVERITIES, Event
from wsgate.logs.summary import Summary

RESET: Final = "\x1b[0m"
DIM: Final = "\x1b[2m"
BOLD: Final = "\x1b[1m"
RED: Final = "\x1b[31m"
GREEN: Final = "\x1b[32m"
YELLOW: Final = "\x1b[33m"
BLUE: Final = "\x1b[34m"
MAGENTA: Final = "\x1b[35m"
CYAN: Final = "\x1b[36m"

PATH_WIDTH: Final = 40


def json_line(value: Event | dict[str, Any]) -> bytes:
    """One compact JSON object and a newline, UTF-8: what `--format json` writes."""
    try:
        return orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        # What orjson refuses but a lenient read can produce: integers beyond 64 bits,
        # lone surrogates from "\ud800" escapes. ASCII escapes keep the output valid.
        return (json.dumps(value, separators=(",", ":")) + "\n").encode()


def to_json_line(value: Event | dict[str, Any]) -> str:
    return json_line(value)[:-1].decode()


def _status_colour(event: Event) -> str:
    status = event.get("status")
    if not isinstance(status, int):
        return RED if SEVERITIES.get(event.get("severity", ""), 0) >= 500 else DIM
    if status >= 500:
        return RED
    if status >= 400:
        return YELLOW
    if status == 101:
        return CYAN
    return GREEN


def _duration(ms: object) -> str:
    if not isinstance(ms, int | float) or isinstance(ms, bool):
        return ""
    if ms < 1:
        return f"{ms:.2f}ms"
    if ms < 1000:
        return f"{ms:.0f}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    return f"{ms / 60_000:.1f}m"


def _clean(text: str) -> str:
    # Log text is untrusted: no terminal escape sequences or line breaks from it.
    return "".join(c if c.isprintable() else " " for c in text) if not text.isprintable() \
        else text


def _short_time(ts: object) -> str:
    if not isinstance(ts, str) or len(ts) < 19:
        return " " * 23
    # 2026-11-26T00:47:55.123456Z -> 2026-11-26 00:47:55.123 (UTC, milliseconds)
    fraction = ts[19:].rstrip("Z")
    millis = (fraction[1:4] if fraction.startswith(".") else "").ljust(3, "0")
    return f"{ts[:10]} {ts[11:19]}.{millis}"


def _detail(event: Event) -> str:
    """The part a person reads last: what went wrong, or the message."""
    parts = []
    error = event.get("error")
    message = event.get("message")
    if isinstance(message, str) and message:
        parts.append(message)
    if isinstance(error, str) and error and error != message:
        parts.append(error)
    reason = event.get("reason")
    if isinstance(reason, str):
        parts.append(f"reason={reason}")
    error_class = event.get("errorClass")
    if isinstance(error_class, str):
        parts.append(f"[{error_class}]")
    rid = event.get("requestId")
    if isinstance(rid, str):
        parts.append(f"id={rid}")
    return _clean(" ".join(parts))


def pretty_line(event: Event, colour: bool) -> str:
    """time  source  status method path  duration  ws-close  message/error."""
    status = event.get("status")
    status_text = str(status) if isinstance(status, int) else "-"
    method = _clean(str(event.get("method", "-"))[:7])
    path = _clean(str(event.get("path") or event.get("url") or "-"))
    if len(path) > PATH_WIDTH:
        path = path[:PATH_WIDTH - 1] + "…"
    duration = _duration(event.get("wsDurationMs") if event.get("isWebSocket") is True
                         and "wsDurationMs" in event else event.get("latencyMs"))
    close = event.get("closeCode")
    ws = f"ws {close}" if isinstance(close, int) else ("ws" if event.get("isWebSocket") is True
                                                      else "")
    source = str(event.get("source", "?"))
    detail = _detail(event)
    if not colour:
        return (f"{_short_time(event.get('timestamp'))}  {source:<6} {status_text:>3} "
                f"{method:<7} {path:<{PATH_WIDTH}} {duration:>7}  {ws:<7} {detail}").rstrip()
    sev = SEVERITIES.get(event.get("severity", ""), 0)
    detail_colour = RED if sev >= 500 else YELLOW if sev >= 400 else ""
    source_colour = MAGENTA if source == "edge" else BLUE
    return (f"{DIM}{_short_time(event.get('timestamp'))}{RESET}  "
            f"{source_colour}{source:<6}{RESET} "
            f"{_status_colour(event)}{BOLD}{status_text:>3}{RESET} "
            f"{method:<7} {path:<{PATH_WIDTH}} {DIM}{duration:>7}{RESET}  "
            f"{CYAN}{ws:<7}{RESET} {detail_colour}{detail}{RESET if detail_colour else ''}"
            ).rstrip()


def pretty_group(group: Group, colour: bool) -> list[str]:
    """The edge's line first, then each other event of the request indented beneath."""
    lead = group.lead()
    lines = [pretty_line(lead, colour)]
    for event in group.events:
        if event is not lead:
            lines.append("  └ " + pretty_line(event, colour))
    return lines


def summary_text(summary: Summary, colour: bool) -> str:
    data = summary.as_json()
    bold = (lambda s: f"{BOLD}{s}{RESET}") if colour else (lambda s: s)
    out = [bold("wsgate logs " + _("summary")),
           _("events: {count}  from {first} to {last}").format(
               count=data["events"], first=data["first"] or "?", last=data["last"] or "?")]

    def counts(title: str, values: dict[str, int]) -> None:
        if values:
            out.append(f"{bold(title)}: " + ", ".join(f"{k}={v}" for k, v in values.items()))

    counts(_("sources"), data["bySource"])
    counts(_("status"), data["byStatusClass"])
    counts(_("websocket sessions by close code"), data["websocketSessionsByCloseCode"])
    for source, lat in data["latencyMs"].items():
        title = bold(_("latency {source}").format(source=source))
        requests = _("({count} requests)").format(count=lat["count"])
        out.append(f"{title} {requests}: "
                   + ", ".join(f"{k} {_duration(v)}" for k, v in lat.items() if k != "count"))
    if data["topErrors"]:
        out.append(bold(_("top errors:")))
        for item in data["topErrors"]:
            out.append(f"  {item['count']:>6}  {_clean(item['message'])}")
    if data["refusals"]:
        # Every reason, however rare, with its first event: a flood of one reason
        # must not hide the first line of another.
        out.append(bold(_("refusals by reason (first event of each):")))
        for item in data["refusals"]:
            out.append(f"  {item['count']:>6}  {item['source']}: {_clean(item['reason'])}")
            out.append(f"          {pretty_line(item['first'], colour)}")
    return "\n".join(out)
