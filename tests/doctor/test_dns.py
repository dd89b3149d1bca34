"""dns-unresolvable, without sending a single DNS query off this machine.

The doctor runs inside a private network namespace whose only interface is its
own loopback and whose resolv.conf names 127.0.0.1, where nothing answers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.doctor.helpers import diagnosis, diagnosis_ids, explain, run_doctor, statuses

IP = shutil.which("ip")


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    assert IP is not None
    return subprocess.run([IP, *args], capture_output=True, text=True, timeout=10)


@pytest.fixture
def isolated_namespace() -> Iterator[str]:
    if IP is None or os.geteuid() != 0:
        pytest.skip("needs root and iproute2 to create a network namespace")
    name = f"wsgate-doctor-{uuid.uuid4().hex[:8]}"
    if _ip("netns", "add", name).returncode != 0:
        pytest.skip("cannot create a network namespace here")
    config = Path("/etc/netns") / name
    try:
        config.mkdir(parents=True)
        (config / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name
    finally:
        _ip("netns", "del", name)
        shutil.rmtree(config, ignore_errors=True)
        with contextlib.suppress(OSError):  # only when no other namespace uses it
            config.parent.rmdir()


def test_unresolvable_name(isolated_namespace: str) -> None:
    assert IP is not None
    code, report = run_doctor("https://app.doctor-test.invalid/", "--timeout", "3",
                              prefix=(IP, "netns", "exec", isolated_namespace))
    assert code == 1, explain(report)
    assert diagnosis_ids(report) == ["dns-unresolvable"]
    assert "app.doctor-test.invalid" in diagnosis(report, "dns-unresolvable")["summary"]
    checks = statuses(report)
    assert checks["dns"] == "fail"
    assert checks["tcp"] == checks["http"] == checks["upgrade"] == "skip"
