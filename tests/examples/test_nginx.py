"""examples/nginx.conf with real nginx in front of the guarded origin passes the doctor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.demo.helpers import describe, doctor_json, guarded_stack
from tests.examples.nginx_setup import nginx, render
from tests.support import free_port
from wsgate.demo.stack import DemoStack

pytestmark = [pytest.mark.nginx, pytest.mark.streamlit, pytest.mark.slow]


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    # The origin's public URL is nginx's address: reserve that port first.
    with guarded_stack(tmp_path_factory.mktemp("origin"), edge=False,
                       edge_port=free_port()) as stack:
        yield stack


def test_example_renders_only_the_deployment_lines(tmp_path: Path) -> None:
    text = render(listen_port=1234, origin_port=5678, secret_file=tmp_path / "s.conf")
    assert "listen 127.0.0.1:1234;" in text
    assert "server 127.0.0.1:5678;" in text
    assert "proxy_read_timeout 3600s;" in text  # above Streamlit's 30 s ping interval


def test_nginx_example_passes_the_doctor(origin: DemoStack, tmp_path: Path) -> None:
    plan = origin.plan
    with nginx(tmp_path, listen_port=plan.edge_port, origin_port=plan.origin_port,
               secret=origin.secret):
        code, report = doctor_json(plan.public_url, "--origin", plan.origin_url,
                                   env={"WSGATE_SECRET": origin.secret})
        log = (tmp_path / "access.log").read_text() + (tmp_path / "error.log").read_text()
    assert report["ok"] is True, describe(report)
    assert code == 0
    assert report["diagnoses"] == []
    statuses = {c["id"]: c["status"] for c in report["checks"]}
    assert statuses["session"] == "pass"
    assert statuses["upgrade"] == "pass"
    assert origin.secret not in log  # nginx never logs the secret


def test_nginx_without_upgrade_lines_fails_the_doctor(origin: DemoStack, tmp_path: Path) -> None:
    # The same file with the two Upgrade/Connection lines removed: the broken setup
    # the guide's first row describes. The doctor must see it, so the test above can fail.
    plan = origin.plan
    with nginx(tmp_path, listen_port=plan.edge_port, origin_port=plan.origin_port,
               secret=origin.secret, drop_upgrade=True):
        code, report = doctor_json(plan.public_url)
    assert report["ok"] is False
    assert code == 1
    assert "upgrade-not-forwarded" in [d["id"] for d in report["diagnoses"]], describe(report)


def test_nginx_with_another_secret_is_refused(origin: DemoStack, tmp_path: Path) -> None:
    plan = origin.plan
    with nginx(tmp_path, listen_port=plan.edge_port, origin_port=plan.origin_port,
               secret="not-the-origin-secret"):
        code, report = doctor_json(plan.public_url)
    assert code == 1
    assert "secret-rejected" in [d["id"] for d in report["diagnoses"]], describe(report)
