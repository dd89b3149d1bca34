"""Rendering a doctor Report: a terminal view (rich) and the stable JSON object."""

from __future__ import annotations

import os
from typing import IO, Any

from rich.console import Console
from rich.text import Text

from wsgate.doctor.diagnosis import first_break
from wsgate.doctor.model import Diagnosis, Report
from wsgate.i18n import _

SYMBOLS = {"pass": "✓", "fail": "✗", "warn": "!", "skip": "-"}
STYLES = {"pass": "green", "fail": "bold red", "warn": "yellow", "skip": "dim"}


def to_json(report: Report) -> dict[str, Any]:
    """The --json object; its shape is a documented, stable interface."""
    return {
        "url": report.url,
        "ok": report.ok,
        "checks": [{"id": c.id, "status": c.status, "detail": c.detail,
                    "durationMs": c.duration_ms} for c in report.checks],
        "diagnoses": [{"id": d.id, "severity": d.severity, "summary": d.summary,
                       "evidence": d.evidence, "fix": d.fix} for d in report.diagnoses],
    }


def path_picture(report: Report) -> str:
    """client ── edge ── origin, with the first break marked (plain text)."""
    broken = first_break(report)
    where = broken.where if broken else None
    link1 = "──✗──" if where == "client-edge" else "─────"
    link2 = "──✗──" if where == "edge-origin" else "─────"
    edge = _("edge") + (" ✗" if where == "edge" else "")
    origin = _("origin") + (" ✗" if where == "origin" else "")
    client = _("client")
    picture = f"{client} {link1}▶ {edge} {link2}▶ {origin}"
    if broken is None:
        return picture + "   " + _("(no break found)")
    if where == "path":
        return picture + "   " + _("(broken somewhere on the path: {id})").format(id=broken.id)
    return picture + "   " + _("(broken: {id})").format(id=broken.id)


def _diagnosis_lines(d: Diagnosis) -> list[Text]:
    label = _("ERROR") if d.severity == "error" else _("WARNING")
    style = "bold red" if d.severity == "error" else "yellow"
    head = Text()
    head.append(f"{label} ", style=style)
    head.append(f"[{d.id}] ", style="bold")
    head.append(d.summary)
    return [head, Text("  " + _("evidence: {evidence}").format(evidence=d.evidence)),
            Text("  " + _("fix: {fix}").format(fix=d.fix))]


def render(report: Report, file: IO[str] | None = None, color: bool | None = None) -> None:
    """Print the report; no colour under NO_COLOR or when not writing to a terminal."""
    if color is None:
        color = "NO_COLOR" not in os.environ
    console = Console(file=file, no_color=not color, highlight=False, soft_wrap=True,
                      emoji=False, markup=False)
    console.print(Text(f"wsgate doctor {report.url}", style="bold"))
    width = max((len(c.id) for c in report.checks), default=4)
    for check in report.checks:
        line = Text()
        line.append(f" {SYMBOLS[check.status]} ", style=STYLES[check.status])
        line.append(check.id.ljust(width + 1))
        duration = "" if check.status == "skip" else f"{check.duration_ms:7.0f} ms  "
        line.append(duration.rjust(12), style="dim")
        line.append(check.detail)
        console.print(line)
    console.print()
    console.print(Text(path_picture(report)))
    console.print()
    if not report.diagnoses:
        console.print(Text(_("No problems found."), style="bold green"))
        return
    for diagnosis in report.diagnoses:
        for text in _diagnosis_lines(diagnosis):
            console.print(text)
