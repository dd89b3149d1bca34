"""The two targets of the conformance suite, started the way users start them.

`wsgate edge --config FILE` and `wsgate worker dev --config FILE` read the same TOML
file (one route table, one header policy); both write their JSON events to the
file's `log_file` (`worker dev` sends workerd's console.log lines there).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support import LOOPBACK, REPO, SECRET, Edge, free_port, wsgate_command
from tests.support.edge import config_toml
from wsgate.worker.workerd import WorkerdMissing, find_workerd

KINDS = ("edge", "worker")


def workerd_binary() -> Path:
    """The pinned workerd; missing is a failure (scripts/test.sh installs it), never a skip."""
    try:
        return find_workerd(os.environ, REPO)
    except WorkerdMissing as exc:
        pytest.fail(f"{exc} (scripts/test.sh installs it)")


def target_process(kind: str, routes: Sequence[tuple[str, str]], *,
                   settings: Mapping[str, Any] | None = None, secret: str = SECRET,
                   port: int | None = None, env: Mapping[str, str] | None = None) -> Edge:
    """An unstarted `wsgate edge` or `wsgate worker dev` for `routes` ((pattern, origin)
    pairs) and `settings` (TOML keys and section tables), listening on loopback."""
    assert kind in KINDS, kind
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix=f"wsgate-{kind}-"))
    log_file = workdir / "events.jsonl"
    config = workdir / "edge.toml"
    config.write_text(config_toml(
        {"listen": f"{LOOPBACK}:{port}", "log_file": str(log_file), **(settings or {})},
        routes))
    command = ["edge"] if kind == "edge" else ["worker", "dev"]
    full_env = {"WSGATE_SECRET": secret, **(env or {})}
    if kind == "worker":
        full_env["WSGATE_WORKERD"] = str(workerd_binary())
    return Edge(wsgate_command(*command, "--config", str(config)), port, full_env, str(REPO),
                secret=secret, log_file=log_file)
