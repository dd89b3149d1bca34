"""The doctor against a wsgate edge whose admission control refuses it: a distinct
diagnosis naming the limit, not "the edge could not reach the origin"."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from tests.doctor.helpers import diagnosis, diagnosis_ids, explain, run_doctor, statuses
from tests.guard.fixtures import SECRETS, GuardedStreamlit, start_guarded_streamlit
from tests.support import LOOPBACK, Edge, edge_process

pytestmark = pytest.mark.streamlit


@pytest.fixture(scope="module")
def guarded() -> Iterator[GuardedStreamlit]:
    with start_guarded_streamlit() as server:
        yield server


def doctor_while_a_session_is_held(edge: Edge) -> dict[str, object]:
    """Run the doctor while another client holds a Streamlit session through the edge."""
    async def run() -> dict[str, object]:
        async with connect(f"ws://{LOOPBACK}:{edge.port}/_stcore/stream",
                           subprotocols=[Subprotocol("streamlit"), Subprotocol("x")],
                           open_timeout=20, proxy=None):
            code, report = await asyncio.to_thread(run_doctor, f"http://{LOOPBACK}:{edge.port}/")
        assert code == 1, explain(report)
        return report
    return asyncio.run(run())


def test_an_origin_at_its_session_limit_is_diagnosed_as_admission(
        guarded: GuardedStreamlit) -> None:
    settings = {"forwarded_proto": "http", "admission": {"max_websockets_per_origin": 1}}
    with edge_process(guarded.base_url, secret=SECRETS[0], settings=settings) as edge:
        report = doctor_while_a_session_is_held(edge)
    assert statuses(report)["http"] == "pass"
    assert diagnosis_ids(report)[0] == "admission-refused", explain(report)
    assert "edge-origin-unreachable" not in diagnosis_ids(report)
    found = diagnosis(report, "admission-refused")
    assert "503" in found["summary"] and "max_websockets_per_origin" in found["summary"]
    assert "max_websockets_per_origin" in found["fix"]


def test_a_client_at_its_websocket_limit_is_diagnosed_as_admission(
        guarded: GuardedStreamlit) -> None:
    settings = {"forwarded_proto": "http", "admission": {"max_websockets_per_client": 1}}
    with edge_process(guarded.base_url, secret=SECRETS[0], settings=settings) as edge:
        report = doctor_while_a_session_is_held(edge)
    assert diagnosis_ids(report)[0] == "admission-refused", explain(report)
    found = diagnosis(report, "admission-refused")
    assert "429" in found["summary"] and "max_websockets_per_client" in found["summary"]
    assert "upgrade-not-forwarded" not in diagnosis_ids(report)
