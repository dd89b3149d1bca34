"""Run examples/nginx.conf with real Debian nginx on loopback, as an unprivileged test.

The example is a file for `conf.d/` (included inside `http {}`); the test wraps it
in a minimal main config with every path in a temporary directory, and rewrites
only the three deployment-specific lines (listen, upstream server, secret include),
each of which must be found exactly once, so the test breaks if the example drifts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.support import REPO, wait_for_port

EXAMPLE = REPO / "examples" / "nginx.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

MAIN = """\
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/wsgate.conf;
}}
"""

# Lines a broken deployment forgets: the Upgrade/Connection pair.
UPGRADE_LINES = ("proxy_set_header Upgrade $http_upgrade;",
                 "proxy_set_header Connection $wsgate_connection;")


def replace_once(text: str, old: str, new: str) -> str:
    count = text.count(old)
    if count != 1:
        raise AssertionError(f"examples/nginx.conf: expected {old!r} once, found {count}")
    return text.replace(old, new)


def render(*, listen_port: int, origin_port: int, secret_file: Path,
           drop_upgrade: bool = False) -> str:
    text = EXAMPLE.read_text()
    text = replace_once(text, "listen 80;", f"listen 127.0.0.1:{listen_port};")
    text = replace_once(text, "server 127.0.0.1:8501;", f"server 127.0.0.1:{origin_port};")
    text = replace_once(text, "include /etc/nginx/wsgate-secret.conf;",
                        f"include {secret_file};")
    if drop_upgrade:
        for line in UPGRADE_LINES:
            text = replace_once(text, line, "# (removed by the test) " + line)
    return text


@contextlib.contextmanager
def nginx(tmp: Path, *, listen_port: int, origin_port: int, secret: str,
          drop_upgrade: bool = False) -> Iterator[Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    tmp.chmod(0o755)  # nginx workers drop to `nobody` when the tests run as root
    secret_file = tmp / "wsgate-secret.conf"
    # The documented way to write the include: one `set` line, readable by its owner only.
    secret_file.write_text(f'set $wsgate_secret "{secret}";\n')
    secret_file.chmod(0o600)
    (tmp / "wsgate.conf").write_text(render(listen_port=listen_port, origin_port=origin_port,
                                            secret_file=secret_file,
                                            drop_upgrade=drop_upgrade))
    (tmp / "nginx.conf").write_text(MAIN.format(dir=tmp))
    test = subprocess.run([NGINX, "-t", "-p", str(tmp), "-c", str(tmp / "nginx.conf")],
                          capture_output=True, text=True, timeout=30, check=False)
    assert test.returncode == 0, test.stderr
    with open(tmp / "nginx.out", "wb") as out:
        process = subprocess.Popen([NGINX, "-p", str(tmp), "-c", str(tmp / "nginx.conf")],
                                   stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        wait_for_port(listen_port, timeout=30, process=process)
        yield tmp
    finally:
        # SIGQUIT: nginx's graceful shutdown; the group kill catches a stuck worker.
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGQUIT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
