"""dns-unresolvable, without sending a single DNS query off this machine.

The doctor runs inside a private network namespace whose only interface is its
own loopback and whose resolv.conf names 127.0.0.1, where nothing answers.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.doctor.helpers import diagnosis, diagnosis_ids, explain, run_doctor, statuses
from tests.support import IP, private_network_namespace


@pytest.fixture
def isolated_namespace() -> Iterator[str]:
    with private_network_namespace("wsgate-doctor") as name:
        config = Path("/etc/netns") / name
        try:
            config.mkdir(parents=True)
            (config / "resolv.conf").write_text("nameserver 127.0.0.1\n")
            yield name
        finally:
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
