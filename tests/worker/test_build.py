"""`wsgate worker build`: the rendered rules are the Python policy's, the secret is
never written, and settings Cloudflare cannot honour are named (or refused)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.edge import config_toml
from wsgate.config import ConfigError, EdgeConfig, load_config
from wsgate.policy import headers as hp
from wsgate.worker.build import PLACEHOLDER, render_worker, render_wrangler
from wsgate.worker.rules import check_platform, platform_notes, worker_rules
from wsgate.worker.workerd import LOOPBACK_NETWORKS, render_capnp, version_matches

SECRET = "build-test-secret-" + "x" * 20
ORIGIN = "http://127.0.0.1:8501"


def config_from(settings: dict[str, object], origin: str = ORIGIN) -> EdgeConfig:
    return load_config(None, {"origin": origin, **settings}, {"WSGATE_SECRET": SECRET})


def rules_in(js: str) -> dict[str, object]:
    match = re.search(r"^const RULES = (\{.*?^\});$", js, re.M | re.S)
    assert match, "no RULES object in worker.js"
    rules: dict[str, object] = json.loads(match.group(1))
    return rules


def test_rules_are_the_python_policy() -> None:
    config = config_from({"client_ip_header": "CF-Connecting-IP"})
    rules = rules_in(render_worker(config))
    assert rules == json.loads(json.dumps(worker_rules(config)))
    request = hp.RequestPolicy.from_config(config)
    response = hp.ResponsePolicy.from_config(config)
    assert set(rules["requestDrop"]) == {n.decode() for n in request.drop}  # type: ignore[arg-type]
    assert set(rules["responseDrop"]) == {n.decode() for n in response.drop}  # type: ignore[arg-type]
    assert set(rules["hopByHop"]) == {n.decode() for n in hp.HOP_BY_HOP}  # type: ignore[arg-type]
    assert rules["marker"] == ["x-worker-proxy", "Active"]
    assert rules["cacheValue"] == "public, max-age=86400"
    assert rules["secretHeader"] == "x-cf-secret"
    assert rules["secretBinding"] == "WSGATE_SECRET"
    assert rules["routes"] == [{"pattern": "*/*", "host": "", "path": "/", "prefix": True,
                                "origin": "http://127.0.0.1:8501",
                                "originUrl": "http://127.0.0.1:8501"}]
    assert PLACEHOLDER not in render_worker(config)


def test_forwarded_proto_auto_means_the_clients_scheme() -> None:
    assert worker_rules(config_from({"forwarded_proto": "auto"}))["forwardedProto"] == ""
    assert worker_rules(config_from({"forwarded_proto": "http"}))["forwardedProto"] == "http"


def test_no_secret_in_any_generated_file(tmp_path: Path) -> None:
    config = config_from({})
    texts = [render_worker(config), render_wrangler(config, "edge"),
             render_capnp(config, config.listen, with_secret=True)]
    for text in texts:
        assert SECRET not in text
    assert "wrangler secret put WSGATE_SECRET" in texts[1]
    assert 'fromEnvironment = "WSGATE_SECRET"' in texts[2]


def test_workerd_may_reach_only_loopback() -> None:
    capnp = render_capnp(config_from({}), "127.0.0.1:8787", with_secret=False)
    allow = re.search(r"allow = \[(.*?)\]", capnp)
    assert allow is not None
    assert json.loads(f"[{allow.group(1)}]") == list(LOOPBACK_NETWORKS) == \
        ["127.0.0.0/8", "::1/128"]
    assert 'globalOutbound = "loopback"' in capnp


def test_version_check() -> None:
    assert version_matches("workerd 2026-11-17")
    assert not version_matches("workerd 2024-01-01")


def test_settings_cloudflare_replaces_are_named() -> None:
    config = config_from({"admin_listen": "127.0.0.1:9090", "log_file": "/tmp/x.jsonl",
                          "timeouts": {"websocket_ping_interval": 30.0, "client_idle": 9.0},
                          "limits": {"max_header_bytes": 4096}})
    keys = [n.key for n in platform_notes(config)]
    assert keys == ["admin_listen", "log_file", "limits.max_header_bytes",
                    "timeouts.client_idle", "timeouts.websocket_ping_interval",
                    "routes[0].origin"]
    assert all("not applied by the Worker; " in str(n) for n in platform_notes(config))


def test_defaults_need_no_notice_but_an_ip_origin() -> None:
    assert [n.key for n in platform_notes(config_from({}, "http://app.internal:8501"))] == []


@pytest.mark.parametrize(("settings", "key"), [
    ({"client_ip_header": "X-Real-IP"}, "client_ip_header"),
    ({"draining_origins": [ORIGIN]}, "draining_origins"),
])
def test_settings_that_would_silently_change_behaviour_are_errors(
        settings: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as refused:
        check_platform(config_from(settings))
    assert str(refused.value).startswith(f"{key}: ")


def test_a_route_with_several_origins_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text('[[routes]]\npattern = "*/*"\n'
                    'origins = ["http://a.internal:1", "http://b.internal:1"]\n')
    with pytest.raises(ConfigError, match=r"^routes\[0\]\.origins: "):
        check_platform(load_config(path, None, {"WSGATE_SECRET": SECRET}))


def build(tmp_path: Path, settings: dict[str, object], env: dict[str, str]
          ) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "edge.toml"
    config.write_text(config_toml(settings, [("app.example.com/*", "https://origin.example")]))
    full = {k: v for k, v in os.environ.items() if k != "WSGATE_SECRET"}
    return subprocess.run([sys.executable, "-m", "wsgate", "worker", "build", "--config",
                           str(config), "--out", str(tmp_path / "out")],
                          env={**full, **env}, capture_output=True, text=True, timeout=60)


def test_build_needs_the_secrets_name_not_its_value(tmp_path: Path) -> None:
    done = build(tmp_path, {"secret_env": "CF_SECRET", "admin_listen": "127.0.0.1:9090"}, {})
    assert done.returncode == 0, done.stderr
    assert "wsgate worker build: admin_listen: not applied by the Worker;" in done.stderr
    assert "wrangler secret put CF_SECRET" in done.stderr
    wrangler = (tmp_path / "out" / "wrangler.toml").read_text()
    assert '#   { pattern = "app.example.com/*", zone_name = "example.com" },' in wrangler
    assert rules_in((tmp_path / "out" / "worker.js").read_text())["secretBinding"] == "CF_SECRET"


def test_build_with_the_secret_set_does_not_write_it(tmp_path: Path) -> None:
    done = build(tmp_path, {}, {"WSGATE_SECRET": SECRET})
    assert done.returncode == 0, done.stderr
    for path in (tmp_path / "out").iterdir():
        assert SECRET not in path.read_text()


def test_build_refuses_a_setting_with_one_line_naming_the_key(tmp_path: Path) -> None:
    done = build(tmp_path, {"client_ip_header": "X-Client-IP"}, {})
    assert done.returncode == 2
    assert done.stderr.startswith("wsgate worker build: configuration error: client_ip_header: ")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
