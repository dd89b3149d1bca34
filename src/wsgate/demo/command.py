"""`wsgate demo`: the whole system on loopback in one command."""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any

import click
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape

from wsgate.demo.stack import (
    DemoPlan,
    DemoStack,
    DoctorRun,
    Refusal,
    StartupError,
    bundled_app,
    free_port,
    tail,
    verdict,
)
from wsgate.i18n import _

MARKS = {"pass": "[green]✓[/]", "fail": "[red]✗[/]", "warn": "[yellow]![/]",
         "skip": "[dim]-[/]"}


class Stopped(Exception):
    """SIGTERM or SIGHUP: leave the same way as Ctrl-C."""


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signal.Signals(signum).name)


def duration(ms: object) -> str:
    if not isinstance(ms, int | float):
        return ""
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms:.0f} ms"


def check_lines(report: Mapping[str, Any]) -> list[str]:
    """One line per doctor check: mark, id (aligned), detail, time (pure)."""
    checks = [c for c in report.get("checks", []) if isinstance(c, Mapping)]
    width = max((len(str(c.get("id", "?"))) for c in checks), default=0)
    lines = []
    for check in checks:
        mark = MARKS.get(str(check.get("status")), "?")
        name = escape(str(check.get("id", "?")).ljust(width))
        detail = escape(str(check.get("detail", "")))
        took = duration(check.get("durationMs"))
        lines.append(f"      {mark} {name}  {detail}" + (f" [dim]({took})[/]" if took else ""))
    return lines


def diagnosis_lines(report: Mapping[str, Any]) -> list[str]:
    lines = []
    for diag in report.get("diagnoses", []):
        if not isinstance(diag, Mapping):
            continue
        colour = "red" if diag.get("severity") == "error" else "yellow"
        lines.append(f"      [{colour}]{escape(str(diag.get('id', '?')))}[/]: "
                     f"{escape(str(diag.get('summary', '')))}")
        if diag.get("fix"):
            fix = _("fix: {fix}").format(fix="[/]" + escape(str(diag["fix"])))
            lines.append(f"        [dim]{fix}")
    return lines


def show_edge_report(console: Console, run: DoctorRun) -> None:
    if run.report is None:
        failed = _("doctor through the edge: {result}").format(result=escape(run.error or ""))
        console.print(f"  [red]✗[/] {failed}")
        return
    mark, word = ("[green]✓[/]", _("ok")) if run.ok else ("[red]✗[/]", _("NOT ok"))
    result = _("doctor through the edge: {result}").format(result=f"[bold]{word}[/]")
    console.print(f"  {mark} {result} [dim]({run.elapsed_s:.1f} s)[/]")
    for line in check_lines(run.report) + diagnosis_lines(run.report):
        console.print(line, highlight=False)


def show_origin_report(console: Console, refusal: Refusal, run: DoctorRun) -> None:
    if refusal.refused:
        console.print("  [green]✓[/] " + _("origin without the secret: refused (page 403, "
                                            "WebSocket upgrade 403)"))
    elif refusal.error:
        console.print("  [red]✗[/] " + _("origin probe failed: {error}").format(
            error=escape(refusal.error)))
    else:
        console.print("  [red]✗[/] " + _("origin without the secret answered page {page}, "
                                          "upgrade {upgrade} (expected 403)").format(
            page=refusal.http_status, upgrade=refusal.upgrade_status))
    if run.report is None:
        console.print("      [dim]" + _("doctor on the origin: {error}").format(
            error=escape(run.error or "")) + "[/]")
        return
    ids = run.diagnosis_ids()
    # Pointed at the origin without the secret, the doctor sees the guard's 403 where
    # it expects an app, and names it secret-rejected: here that is the goal.
    verdict = (_("refused, as it should be") if ids == ["secret-rejected"]
               else _("diagnoses {ids}").format(ids=", ".join(ids) or _("none")))
    console.print("      [dim]" + _("wsgate doctor on the origin directly, without the secret: "
                                    "{verdict}").format(verdict=escape(verdict)) + "[/]")


def show_output(console: Console, name: str, text: str) -> None:
    """A child's last lines, where the real cause of a failure is."""
    if text:
        console.print("[dim]" + _("last lines of the {name} output:").format(
            name=escape(_(name))) + "[/]", highlight=False)
        console.print(escape(text), highlight=False)


def wait_forever(console: Console, stack: DemoStack) -> int:
    """Until Ctrl-C (exit 0) or until a child dies on its own (exit 1)."""
    while True:
        dead = stack.first_dead()
        if dead is not None:
            code = dead.process.returncode if dead.process else None
            console.print("[red]✗ " + _("{name} exited on its own (status {code})").format(
                name=escape(_(dead.name)), code=code) + "[/]")
            show_output(console, dead.name, tail(dead.output))
            return 1
        time.sleep(0.5)


DEMO_HELP = _("""Start a guarded sample Streamlit app behind the edge, on loopback.

Starts `wsgate run` (the origin, with a fresh secret) and `wsgate edge` in front of
it, runs the doctor through the edge and against the origin directly, prints the
URL to open (through the edge), the origin's own URL (which answers 403) and a
`wsgate logs` command for both logs, and runs until Ctrl-C. The logs are kept on
every ending except a passed --check in a temporary directory.

\b
Examples:
  wsgate demo
  wsgate demo --check                       # CI: exit 0 only when healthy
  wsgate demo --app PATH --port 8080        # your own script behind the edge
  wsgate demo --log-dir PATH

\b
Exit status:
  0    stopped by Ctrl-C/SIGTERM/SIGHUP, or --check passed
  1    --check failed, or a process failed to start or exited on its own
  2    usage error
  130  --check interrupted before it finished

\b
Environment:
  WSGATE_SECRET   set by the demo for its two processes (fresh each time);
                  yours is not read
  STREAMLIT_*     not passed on, so a local Streamlit setup cannot change the demo
""")


@click.command(help=DEMO_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--check", is_flag=True,
              help=_("Non-interactive: exit 0 only if the doctor reports ok through the edge "
                     "and the origin refuses direct access, else print what failed and exit 1."))
@click.option("--app", "app_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, metavar="PATH", show_default=_("the bundled sample"),
              help=_("Streamlit script to serve instead of the bundled sample."))
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              metavar="PORT", help=_("Edge (public) port on 127.0.0.1; 0 picks a free one."))
@click.option("--origin-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              metavar="PORT", help=_("Origin port on 127.0.0.1; 0 picks a free one."))
@click.option("--startup-timeout", type=click.FloatRange(1, 600), default=90.0,
              show_default=True, metavar="SECONDS",
              help=_("Seconds to wait for both processes to be ready."))
@click.option("--log-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              metavar="PATH", show_default=_("a new temporary directory"),
              help=_("Write the edge's and origin's logs here."))
def demo(check: bool, app_path: Path | None, port: int, origin_port: int,
         startup_timeout: float, log_dir: Path | None) -> None:
    console = Console(highlight=False, soft_wrap=True)
    if port and port == origin_port:
        raise click.BadParameter(_("the edge and the origin need different ports"),
                                 param_hint="--port/--origin-port")
    temporary = log_dir is None
    try:
        logs = Path(tempfile.mkdtemp(prefix="wsgate-demo-")) if log_dir is None else log_dir
        logs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.BadParameter(_("cannot create {path}: {error}").format(
            path=exc.filename, error=exc.strerror),
                                 param_hint="--log-dir") from exc
    plan = DemoPlan(app=(app_path or bundled_app()).resolve(),
                    origin_port=origin_port or free_port(), edge_port=port or free_port(),
                    log_dir=logs)
    previous = {s: signal.signal(s, _raise_stopped) for s in (signal.SIGTERM, signal.SIGHUP)}
    code = 1
    try:
        code = _run(console, plan, check, startup_timeout)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _keep_or_remove_logs(console, plan, temporary=temporary,
                             passed_check=check and code == 0)
    raise SystemExit(code)


def _keep_or_remove_logs(console: Console, plan: DemoPlan, *, temporary: bool,
                         passed_check: bool) -> None:
    """A passed --check in a temporary directory leaves nothing behind; every other
    ending keeps the logs (the screen showed a `wsgate logs` command for them, or
    they explain a failure) and says where they are."""
    if temporary and passed_check:
        shutil.rmtree(plan.log_dir, ignore_errors=True)
        return
    with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
        command = f"wsgate logs --join {plan.edge_log} {plan.origin_log}"
        console.print(_("Logs kept in {path}: {command}").format(
            path=f"[bold]{escape(str(plan.log_dir))}[/]", command=escape(command)),
            highlight=False)


def _run(console: Console, plan: DemoPlan, check: bool, startup_timeout: float) -> int:
    started = time.monotonic()
    deadline = started + startup_timeout
    stack = DemoStack(plan)
    try:
        console.print("[bold]wsgate demo[/] [dim]— " + _(
            "a guarded Streamlit app behind the wsgate edge, on loopback") + "[/]")
        console.print("  [green]✓[/] " + _("fresh secret generated") + " [dim]" + _(
            "(kept in memory, passed to both processes as $WSGATE_SECRET)") + "[/]")
        with console.status("  " + _("starting the origin (wsgate run + Streamlit)…")):
            took = stack.start_origin(deadline)
        console.print(_ready_line(_("origin"), "wsgate run", plan.origin_url, took))
        with console.status("  " + _("starting the edge (wsgate edge)…")):
            took = stack.start_edge(deadline)
        console.print(_ready_line(_("edge"), "wsgate edge", plan.public_url, took))
        with console.status("  " + _("running the doctor through the edge and on the origin…")), \
                ThreadPoolExecutor(max_workers=3) as pool:
            edge_future = pool.submit(stack.doctor_through_edge)
            origin_future = pool.submit(stack.doctor_on_origin)
            refusal_future = pool.submit(stack.probe_origin)
            edge_run, origin_run = edge_future.result(), origin_future.result()
            refusal = refusal_future.result()
        show_edge_report(console, edge_run)
        show_origin_report(console, refusal, origin_run)
        problems = verdict(edge_run, refusal, origin_run)
        console.print("[dim]" + _("Started and checked in {seconds:.1f} s.").format(
            seconds=time.monotonic() - started) + "[/]")
        if check:
            return _check_result(console, stack, problems)
        _show_urls(console, plan, problems)
        code = wait_forever(console, stack)
    except StartupError as exc:
        console.print(f"[red]✗ {escape(str(exc))}[/]")
        show_output(console, exc.child, exc.output)
        return 1
    except (KeyboardInterrupt, Stopped):
        # Stopping is how an interactive demo ends; an interrupted check did not pass.
        code = 130 if check else 0
    finally:
        # A second Ctrl-C must not interrupt the cleanup and leave orphans.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if stack.children and not check:
                # After SIGHUP the terminal may be gone: printing must not skip the stop.
                with contextlib.suppress(OSError):
                    console.print("\n" + _("stopping the edge and the origin…"))
            stack.stop()
        finally:
            signal.signal(signal.SIGINT, previous)
    with contextlib.suppress(OSError):
        if check:
            console.print("[red]" + _("interrupted: the check did not finish.") + "[/]")
        else:
            console.print(_("stopped.") if code == 0 else _("stopped after an error."))
    return code


def _check_result(console: Console, stack: DemoStack, problems: list[str]) -> int:
    if not problems:
        console.print("[green bold]" + _("demo check passed") + "[/]: " + _(
            "the doctor reports ok through the edge and the origin refuses direct access."))
        return 0
    console.print("[red bold]" + _("demo check FAILED") + "[/]:")
    for problem in problems:
        console.print(f"  - {escape(problem)}")
    for child in stack.children:
        show_output(console, child.name, tail(child.output))
    return 1


def _show_urls(console: Console, plan: DemoPlan, problems: list[str]) -> None:
    for problem in problems:
        console.print(f"[yellow]! {escape(problem)}[/]")
    console.print()
    rows = [(_("Open"), f"[bold cyan]{plan.public_url}[/]   " + _("the app, through the edge")),
            (_("Direct"), f"{plan.origin_url}   " + _("the origin itself: 403 without the secret")),
            (_("Logs"), f"[dim]wsgate logs --join {plan.edge_log} {plan.origin_log}[/]")]
    width = max(cell_len(label) for label, _text in rows)
    for label, text in rows:
        console.print(f"  {label}{' ' * (width - cell_len(label))}  {text}")
    console.print()
    console.print(_("Press Ctrl-C to stop."))


def _ready_line(label: str, command: str, url: str, took: float) -> str:
    # Padded by terminal cells (a Japanese character is two wide) so the columns align.
    width = max(cell_len(_("origin")), cell_len(_("edge"))) + 2
    label = label + " " * (width - cell_len(label))
    ready = _("ready in {seconds:.1f} s").format(seconds=took)
    return f"  [green]✓[/] {label}[dim]{command:<13}[/]{url}  [dim]{ready}[/]"
