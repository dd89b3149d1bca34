"""`wsgate run`'s console line and its handling of a stdout without a reader (pure
parts and a real pipe; the end-to-end behaviour is in test_run_command.py)."""

from __future__ import annotations

import os

from wsgate.guard.signals import output_is_broken
from wsgate.guard.streamlit import GuardSettings, banner, listening_url


def test_listening_url_shows_the_bound_address() -> None:
    assert listening_url("127.0.0.1", 8501) == "http://127.0.0.1:8501"
    assert listening_url("", 8501) == "http://localhost:8501"
    assert listening_url("0.0.0.0", 8501) == "http://localhost:8501"
    assert listening_url("::1", 8501, "/app/") == "http://[::1]:8501/app"


def test_banner_sends_browsers_to_the_edge() -> None:
    guarded = GuardSettings(secrets=("s" * 20,), secret_header="X-CF-Secret",
                            public_url="https://app.example.com")
    line = banner("http://127.0.0.1:8501", guarded)
    assert line == ("wsgate run: origin listening on http://127.0.0.1:8501 (guarded: answers "
                    "403 without the secret; open the app at https://app.example.com)")
    plain = banner("http://127.0.0.1:8501", GuardSettings(secrets=("s" * 20,),
                                                          secret_header="X-CF-Secret"))
    assert "wsgate edge --origin http://127.0.0.1:8501" in plain
    insecure = GuardSettings(secrets=(), secret_header="X-CF-Secret", insecure_no_secret=True)
    assert "guard OFF" in banner("http://127.0.0.1:8501", insecure)


def test_a_pipe_without_reader_is_broken() -> None:
    read_end, write_end = os.pipe()
    try:
        assert not output_is_broken(write_end)
        os.close(read_end)
        read_end = -1
        assert output_is_broken(write_end)
    finally:
        os.close(write_end)
        if read_end != -1:
            os.close(read_end)
