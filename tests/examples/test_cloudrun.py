"""examples/cloudrun-origin.yaml: the settings a WebSocket origin on Cloud Run needs."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.examples.dockerfile import Dockerfile
from tests.support import REPO

PATH = REPO / "examples" / "cloudrun-origin.yaml"


@pytest.fixture(scope="module")
def service() -> dict[str, Any]:
    loaded = yaml.safe_load(PATH.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_is_a_knative_service(service: dict[str, Any]) -> None:
    assert service["apiVersion"] == "serving.knative.dev/v1"
    assert service["kind"] == "Service"
    assert service["metadata"]["name"]


def test_websocket_settings(service: dict[str, Any]) -> None:
    template = service["spec"]["template"]
    assert template["spec"]["timeoutSeconds"] == 3600
    # Annotation values are strings in Knative; a YAML boolean would be rejected.
    assert template["metadata"]["annotations"]["run.googleapis.com/sessionAffinity"] == "true"
    assert service["metadata"]["annotations"]["run.googleapis.com/ingress"] == "all"


def test_secret_comes_from_secret_manager(service: dict[str, Any]) -> None:
    (container,) = service["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    ref = env["WSGATE_SECRET"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] and ref["key"]
    assert "value" not in env["WSGATE_SECRET"]
    assert env["PUBLIC_URL"]["value"].startswith("https://")


def test_port_and_probe_match_the_origin_image(service: dict[str, Any]) -> None:
    (container,) = service["spec"]["template"]["spec"]["containers"]
    image_port = int(Dockerfile.read(REPO / "examples" / "Dockerfile.origin").env()["PORT"])
    assert container["ports"][0]["containerPort"] == image_port
    probe = container["startupProbe"]["httpGet"]
    assert probe["path"] == "/_stcore/health"  # the guard's one open path
    assert probe["port"] == image_port


@pytest.mark.parametrize("setting", ["run.googleapis.com/ingress:",
                                     "run.googleapis.com/sessionAffinity:",
                                     "timeoutSeconds:", "secretKeyRef:"])
def test_each_setting_says_why(setting: str) -> None:
    lines = PATH.read_text().splitlines()
    (index,) = [i for i, line in enumerate(lines) if line.strip().startswith(setting)]
    # The comment explaining a setting sits right above it (the secret: above its `env` item).
    above = [line.strip() for line in lines[max(0, index - 6):index]]
    assert any(line.startswith("#") for line in above), f"no comment above {setting}"
