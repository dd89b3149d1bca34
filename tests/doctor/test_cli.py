"""`wsgate doctor` as users meet it: its --help, and one-line errors on any bad input."""

from __future__ import annotations

import subprocess

import click
import pytest

from tests.support import LOOPBACK, free_port, wsgate_command
from wsgate.doctor.command import doctor

PLACEHOLDERS = {"URL", "HOST:PORT", "PATH", "NAME", "SECONDS"}


def help_text() -> str:
    result = subprocess.run(wsgate_command("doctor", "--help"), capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_help_has_examples_exit_status_and_environment() -> None:
    text = help_text()
    assert "doctor [OPTIONS] URL" in text.splitlines()[0]
    examples = text.split("Examples:")[1].split("Environment:")[0]
    assert examples.count("wsgate doctor ") >= 4
    environment = text.split("Environment:")[1].split("Exit status:")[0]
    for variable in ("WSGATE_SECRET", "NO_COLOR", "SSL_CERT_FILE", "HTTP(S)_PROXY"):
        assert variable in environment
    exit_status = text.split("Exit status:")[1].split("Options:")[0]
    for code in ("0 ", "1 ", "2 ", "130 "):
        assert f"  {code}" in exit_status


def test_options_use_the_shared_placeholders_and_show_defaults_one_way() -> None:
    valued = [p for p in doctor.params if isinstance(p, click.Option) and not p.is_flag]
    assert valued
    for option in valued:
        assert option.metavar in PLACEHOLDERS, option.name
        if isinstance(option.default, str | int | float):  # a real default, not "unset"
            assert option.show_default is True, option.name
    text = help_text()
    assert "[default: /_stcore/stream]" in text
    assert "(default" not in text  # one way only: click's [default: ...]


@pytest.mark.parametrize("args", [
    ("http://[::1/",),
    ("http://127.0.0.1:0/",),
    ("https://user@:443/",),
    ("http://127.0.0.1:1/", "--connect-to", "127.0.0.1"),
    ("http://127.0.0.1:1/", "--timeout", "0"),
    ("http://127.0.0.1:1/", "--follow", "--origin", "ftp://x/"),
])
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    result = subprocess.run(wsgate_command("doctor", *args), capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ")


@pytest.mark.parametrize("extra", [(), ("--follow",), ("--json",)])
def test_a_refused_port_is_a_diagnosis_not_a_traceback(extra: tuple[str, ...]) -> None:
    port = free_port()
    result = subprocess.run(wsgate_command("doctor", f"http://{LOOPBACK}:{port}/", *extra),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result
    assert result.stderr == ""
    assert "tcp-unreachable" in result.stdout
    assert "connection refused" in result.stdout


def test_an_invalid_host_name_is_a_diagnosis_without_a_lookup() -> None:
    # A 70-character label fails IDNA encoding before any DNS query is made.
    host = "a" * 70
    result = subprocess.run(wsgate_command("doctor", f"http://{host}/"), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    assert f"{host}: not a valid host name" in result.stdout
    assert f"ERROR [dns-unresolvable] The public host name {host} does not resolve" \
        in result.stdout
