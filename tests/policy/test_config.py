"""Config loading: defaults, TOML, environment and CLI precedence, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsgate.config import ConfigError, load_config

ENV = {"WSGATE_SECRET": "s3cret"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(text)
    return path


def test_origin_flag_gives_one_catch_all_route_and_defaults() -> None:
    c = load_config(None, {"origin": "http://127.0.0.1:8501"}, ENV)
    assert [r.pattern for r in c.routes] == ["*/*"]
    assert c.routes[0].origin.host_header == "127.0.0.1:8501"
    assert c.secret == "s3cret" and c.secret_header == "X-CF-Secret"
    assert c.forwarded_proto == "auto" and c.marker == ("X-Worker-Proxy", "Active")
    assert ".woff2" in c.cache.extensions and c.cache.value == "public, max-age=86400"
    assert c.strip_response_headers == ("X-Cloud-Trace-Context",)
    assert "s3cret" not in repr(c)


def test_toml_routes_sections_and_precedence(tmp_path: Path) -> None:
    path = write(tmp_path, """
listen = "127.0.0.1:9000"
secret_env = "CF_SECRET"
client_ip_header = "CF-Connecting-IP"
[timeouts]
connect = 2.5
[limits]
max_body_bytes = 1000
[[routes]]
pattern = "app.example.com/*"
origin = "https://svc.a.run.app"
[[routes]]
pattern = "*/api/*"
origin = "http://[::1]:9001"
""")
    env = {"CF_SECRET": "abc", "WSGATE_EDGE_TIMEOUTS_CONNECT": "3", "WSGATE_EDGE_LISTEN":
           "127.0.0.1:9100"}
    c = load_config(path, {"listen": "127.0.0.1:9200"}, env)
    assert c.secret == "abc"
    assert c.timeouts.connect == 3.0  # env beats TOML
    assert c.listen_addr == ("127.0.0.1", 9200)  # CLI beats env
    assert c.limits.max_body_bytes == 1000
    assert c.routes[0].origin.tls and c.routes[0].origin.host_header == "svc.a.run.app"
    assert c.routes[1].origin.host_header == "[::1]:9001"


@pytest.mark.parametrize(("text", "message"), [
    ('lisen = "x"\n[[routes]]\npattern="*/*"\norigin="http://a"', "lisen: unknown key"),
    ('[timeouts]\nconect = 1\n[[routes]]\npattern="*/*"\norigin="http://a"',
     "conect: unknown key in [timeouts]"),
    ('[[routes]]\npattern="*/*"\norigin="ftp://a"', "routes[0].origin"),
    ('[[routes]]\npattern="*/*"\norigin="http://a/base"', "routes[0].origin"),
    ('[[routes]]\npattern="*/*"', "routes[0].origin: missing"),
    ('[[routes]]\npattern="*/a*b"\norigin="http://a"', "routes[0].pattern"),
    ('[[routes]]\npattern="*/*"\norigin="http://a"\nextra=1', "extra: unknown key"),
    ('listen = "nope"\n[[routes]]\npattern="*/*"\norigin="http://a"', "listen:"),
    ('[timeouts]\nconnect = "soon"\n[[routes]]\npattern="*/*"\norigin="http://a"',
     "timeouts.connect: expected a number"),
    ('[limits]\nmax_body_bytes = -1\n[[routes]]\npattern="*/*"\norigin="http://a"',
     "limits.max_body_bytes: must not be negative"),
    ('secret_header = "X CF"\n[[routes]]\npattern="*/*"\norigin="http://a"', "secret_header:"),
    ('marker_header = "NoColon"\n[[routes]]\npattern="*/*"\norigin="http://a"',
     "marker_header:"),
    ('forwarded_proto = "ftp"\n[[routes]]\npattern="*/*"\norigin="http://a"',
     "forwarded_proto:"),
    ('tls_cert = "/nonexistent.pem"\n[[routes]]\npattern="*/*"\norigin="http://a"', "tls_cert:"),
    ('listen = "127.0.0.1:8080"', "routes: no route"),
    ("not toml [", "is not valid TOML"),
])
def test_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(write(tmp_path, text), None, ENV)


def test_the_secret_is_never_read_from_toml(tmp_path: Path) -> None:
    path = write(tmp_path, 'secret = "inline"\n[[routes]]\npattern="*/*"\norigin="http://a"')
    with pytest.raises(ConfigError, match="secret: unknown key"):
        load_config(path, None, ENV)


def test_missing_secret_is_an_error_unless_explicitly_insecure() -> None:
    with pytest.raises(ConfigError, match="environment variable WSGATE_SECRET is not set"):
        load_config(None, {"origin": "http://a"}, {})
    with pytest.raises(ConfigError, match="environment variable WSGATE_SECRET is empty"):
        load_config(None, {"origin": "http://a"}, {"WSGATE_SECRET": "  "})
    c = load_config(None, {"origin": "http://a", "insecure_no_secret": True}, {})
    assert c.secret == ""


def test_secret_from_file_and_bad_secret_value_is_not_echoed(tmp_path: Path) -> None:
    f = tmp_path / "secret"
    f.write_text("from-file\n")
    assert load_config(None, {"origin": "http://a", "secret_file": str(f)}, {}).secret == \
        "from-file"
    with pytest.raises(ConfigError) as info:
        load_config(None, {"origin": "http://a"}, {"WSGATE_SECRET": "bad\x01value"})
    assert "bad\x01value" not in str(info.value)


def test_unknown_environment_variable_is_rejected() -> None:
    with pytest.raises(ConfigError, match="WSGATE_EDGE_LISTN"):
        load_config(None, {"origin": "http://a"}, {**ENV, "WSGATE_EDGE_LISTN": "x"})


REPO = Path(__file__).resolve().parents[2]


def test_example_config_loads_with_the_original_names() -> None:
    c = load_config(REPO / "examples" / "edge.toml", None, {"CF_SECRET": "x"})
    assert c.secret_header == "X-CF-Secret" and c.secret_env == "CF_SECRET"
    assert c.marker == ("X-Worker-Proxy", "Active")
    assert c.routes[0].pattern == "app.sage-base.com/*" and c.routes[0].origin.tls


def test_every_key_is_documented() -> None:
    import dataclasses

    from wsgate.config import CacheRule, EdgeConfig, Limits, Timeouts

    doc = (REPO / "docs" / "edge.md").read_text()
    for cls in (EdgeConfig, CacheRule, Limits, Timeouts):
        for f in dataclasses.fields(cls):
            if f.name in ("routes", "secret", "cache", "limits", "timeouts"):
                continue
            assert f"`{f.name}`" in doc, f.name
