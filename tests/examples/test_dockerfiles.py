"""examples/Dockerfile.origin and Dockerfile.edge: read, checked, and their CMD run here.

Docker is not available on the test machine. The CMD of each image is run as the
container would run it (`sh -c`, the image's ENV, the script where COPY puts it),
with two substitutions made explicit below: the script's path in the image, and
0.0.0.0 → 127.0.0.1 (tests listen on loopback only).
"""

from __future__ import annotations

import http.client
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.demo.helpers import describe, doctor_json
from tests.examples.dockerfile import Dockerfile, instructions
from tests.support import REPO, ServerProcess, free_port

ORIGIN = REPO / "examples" / "Dockerfile.origin"
EDGE = REPO / "examples" / "Dockerfile.edge"
SECRET = "dockerfile-test-secret-0123456789"


def test_reader_handles_continuations_and_comments() -> None:
    steps = instructions("# c\nFROM x\nENV A=1 \\\n    # inside\n    B=2\nCMD [\"a\"]\n")
    assert [(s.keyword, s.value) for s in steps] == [("FROM", "x"), ("ENV", "A=1  B=2"),
                                                     ("CMD", '["a"]')]
    with pytest.raises(ValueError, match="continuation"):
        instructions("RUN a \\\n")


@pytest.mark.parametrize("path", [ORIGIN, EDGE], ids=["origin", "edge"])
def test_image_is_sound(path: Path) -> None:
    image = Dockerfile.read(path)
    assert image.steps[0].keyword == "FROM"
    assert image.steps[0].value.startswith("python:3.11")
    # Every COPY source exists in the build context (the repository root).
    args = image.args()
    for step in image.all("COPY"):
        *sources, _ = step.value.split()
        for source in sources:
            resolved = args.get(source[2:-1], source) if source.startswith("${") else source
            assert (REPO / resolved).exists(), f"{path.name}:{step.line}: {resolved} missing"
    (user,) = image.all("USER")
    assert user.value not in ("root", "0")
    command = image.cmd()
    assert command[:2] == ["sh", "-c"]
    # exec: wsgate becomes PID 1 and receives the platform's SIGTERM itself.
    assert command[2].startswith("exec wsgate ")
    assert "$PORT" in command[2]
    # The image names the variable that holds the secret; it never holds a value.
    for key in image.env():
        assert "SECRET" not in key or key.endswith("_SECRET_ENV"), key


def test_edge_image_does_not_install_streamlit() -> None:
    runs = " ".join(step.value for step in Dockerfile.read(EDGE).all("RUN"))
    assert "pip install ." in runs
    assert "streamlit" not in runs


def container_command(image: Dockerfile, tmp: Path) -> list[str]:
    command = list(image.cmd())
    script = command[2].replace("0.0.0.0", "127.0.0.1")
    for step in image.all("COPY"):
        source, target = step.value.split()[-2:]
        if target.startswith("/app/"):
            # The image's COPY of the app script, done into the test's directory.
            resolved = image.args().get(source[2:-1], source)
            shutil.copy(REPO / resolved, tmp / Path(target).name)
            script = script.replace(target, str(tmp / Path(target).name))
    return [*command[:2], script]


def container_env(image: Dockerfile, **override: str) -> dict[str, str]:
    # `wsgate` on PATH is the one installed for this interpreter.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return {**image.env(), "PATH": path, **override}


def get(port: int, path: str = "/", headers: dict[str, str] | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.fixture(scope="module")
def ports() -> tuple[int, int]:
    return free_port(), free_port()


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory,
           ports: tuple[int, int]) -> Iterator[ServerProcess]:
    origin_port, edge_port = ports
    tmp = tmp_path_factory.mktemp("origin-image")
    image = Dockerfile.read(ORIGIN)
    env = container_env(image, PORT=str(origin_port), WSGATE_SECRET=SECRET,
                        PUBLIC_URL=f"http://127.0.0.1:{edge_port}")
    server = ServerProcess(container_command(image, tmp), origin_port, env, cwd=str(tmp))
    with server.start(timeout=120):
        yield server


@pytest.mark.streamlit
@pytest.mark.slow
def test_origin_command_serves_the_guarded_app(origin: ServerProcess) -> None:
    assert get(origin.port, "/_stcore/health") == 200
    assert get(origin.port, "/") == 403
    assert get(origin.port, "/", {"X-CF-Secret": SECRET}) == 200
    assert SECRET not in origin.output()


@pytest.mark.streamlit
@pytest.mark.slow
def test_edge_command_in_front_passes_the_doctor(
        origin: ServerProcess, ports: tuple[int, int], tmp_path: Path) -> None:
    origin_port, edge_port = ports
    image = Dockerfile.read(EDGE)
    env = container_env(image, PORT=str(edge_port), WSGATE_SECRET=SECRET,
                        ORIGIN_URL=f"http://127.0.0.1:{origin_port}",
                        PUBLIC_HOST=f"127.0.0.1:{edge_port}", FORWARDED_PROTO="http")
    with ServerProcess(container_command(image, tmp_path), edge_port, env,
                       cwd=str(tmp_path)).start(timeout=60) as edge:
        code, report = doctor_json(f"http://127.0.0.1:{edge_port}", "--origin",
                                   f"http://127.0.0.1:{origin_port}",
                                   env={"WSGATE_SECRET": SECRET})
        output = edge.output()
    assert report["ok"] is True, describe(report) + output
    assert code == 0
    assert SECRET not in output
