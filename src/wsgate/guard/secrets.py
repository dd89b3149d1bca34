"""Where the origin's secrets come from: environment variables or a file, never argv.

Several secrets may be active at once so a rotation needs no downtime: an
environment variable may hold several separated by commas, a file one per line
(blank lines and `#` comments ignored). Error messages never contain a value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

from wsgate.i18n import _

MIN_RECOMMENDED_LENGTH: Final = 16


class SecretError(Exception):
    """Secrets configured but unusable; the message names the source, not the value."""


def split_env_value(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def split_file_text(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def _validate(values: Iterable[str], source: str) -> list[str]:
    out = []
    for value in values:
        if not all(0x21 <= ord(c) <= 0x7E for c in value):
            raise SecretError(_("a secret from {source} contains spaces, control or "
                                "non-ASCII characters; it cannot travel in a header").format(
                                    source=source))
        out.append(value)
    return out


def describe_missing(env_names: Iterable[str], env: Mapping[str, str]) -> str:
    """Why no secret came from the environment: each variable "is empty" (set, but
    blank or only commas) or "is not set" (pure; never shows a value)."""
    states = [(_("${name} is empty") if name in env else _("${name} is not set")).format(name=name)
              for name in env_names]
    return ", ".join(states) or _("no --secret-env given")


def load_secrets(env_names: Iterable[str], env: Mapping[str, str],
                 secret_file: str | None) -> tuple[list[str], list[str]]:
    """(secrets, sources used). Duplicates are dropped, order kept."""
    secrets: list[str] = []
    sources: list[str] = []
    for name in env_names:
        raw = env.get(name)
        if raw and split_env_value(raw):
            secrets += _validate(split_env_value(raw), f"${name}")
            sources.append(f"${name}")
    if secret_file is not None:
        try:
            text = Path(secret_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretError(_("cannot read --secret-file {path}: {error}").format(
                path=secret_file, error=exc.__class__.__name__)) from exc
        from_file = split_file_text(text)
        if not from_file:
            raise SecretError(_("--secret-file {path} holds no secret").format(path=secret_file))
        secrets += _validate(from_file, secret_file)
        sources.append(secret_file)
    return list(dict.fromkeys(secrets)), sources
