"""The package as users install it: a wheel built from this checkout, installed (not
editable) into a fresh virtual environment, `wsgate demo --check` run from there.

So a file the package needs at run time (the demo app, the compiled Japanese
catalogs, worker.js) cannot be left out of the wheel unnoticed: the editable
checkout would hide the gap, this test does not.

The suite allows no egress, so nothing is downloaded: the wheel is built by pip with
its usual build isolation from the configured indexes (this machine's are local),
and the virtual environment sees the system's site-packages for the dependencies
(Streamlit and the rest are already installed), while wsgate itself must come from
the wheel: both are asserted.
"""

from __future__ import annotations

import gettext
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support import REPO

pytestmark = [pytest.mark.slow, pytest.mark.streamlit]

BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md", "src")


def run(args: list[str | Path], timeout: float, **kwargs: object
        ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, check=False, **kwargs)
    assert proc.returncode == 0, f"{args}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel from a clean copy of the checkout (no stale build/ or compiled files)."""
    tmp = tmp_path_factory.mktemp("build")
    source = tmp / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns(
                "__pycache__", "*.pyc", "*.egg-info", "*.mo"))
        elif (REPO / name).exists():
            shutil.copy2(REPO / name, source / name)
    # Fail fast on an unreachable index instead of retrying it for minutes.
    run([sys.executable, "-m", "pip", "wheel", source, "--no-deps", "-w", tmp / "wheels"],
        timeout=240, env={**os.environ, "PIP_RETRIES": "0"})
    [wheel] = (tmp / "wheels").glob("wsgate-*.whl")
    return wheel


def tracked_package_files() -> list[str]:
    out = run(["git", "-C", REPO, "ls-files", "src/wsgate"], timeout=30).stdout.split()
    return [path.removeprefix("src/") for path in out]


def test_wheel_holds_every_package_file_and_its_metadata(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read("wsgate-0.1.0.dist-info/METADATA").decode()
    for path in tracked_package_files():
        if path.endswith(".pot"):
            continue  # the extraction template: not read at run time
        if path.endswith(".po"):
            path = path[:-3] + ".mo"  # catalogs ship compiled
        assert path in names, f"{path} is not in {wheel.name}"
    assert "License-Expression: Apache-2.0" in metadata
    assert "Provides-Extra: streamlit" in metadata


def test_installed_wheel_runs_the_demo_check_from_the_venv(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--system-site-packages", venv], timeout=120)
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    run([python, "-m", "pip", "install", "--no-deps", "--no-index", wheel], timeout=120)
    # Outside the checkout, without PYTHONPATH: only the venv and the system paths.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    where = run([python, "-c", "import sysconfig, wsgate, wsgate.demo.stack as s; "
                 "print(sysconfig.get_paths()['purelib']); print(wsgate.__file__); "
                 "print(s.bundled_app())"], timeout=60, cwd=tmp_path, env=env)
    site, package, app = (Path(line) for line in where.stdout.split())
    assert site.is_relative_to(venv), site
    assert package == site / "wsgate" / "__init__.py"
    assert app == site / "wsgate" / "demo" / "app.py" and app.is_file()

    requirements = run([python, "-c", _REQUIREMENTS_CHECK], timeout=60, cwd=tmp_path, env=env)
    assert requirements.stdout.strip() == "all satisfied", requirements.stdout

    po = REPO / "src" / "wsgate" / "locale" / "ja" / "LC_MESSAGES" / "wsgate.po"
    if po.exists():
        msgid, msgstr = first_translation(po)
        catalog = gettext.translation("wsgate", localedir=site / "wsgate" / "locale",
                                      languages=["ja"])
        assert catalog.gettext(msgid) == msgstr

    demo = subprocess.run([bin_dir / "wsgate", "demo", "--check"], capture_output=True,
                          text=True, timeout=150, cwd=tmp_path, env=env, check=False)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "demo check passed" in demo.stdout


# Every requirement of wsgate[streamlit], as declared in the installed wheel's
# metadata, is installed at a version it accepts.
_REQUIREMENTS_CHECK = """
from importlib.metadata import PackageNotFoundError, requires, version
from packaging.requirements import Requirement
bad = []
for text in requires("wsgate") or []:
    req = Requirement(text)
    if req.marker and not req.marker.evaluate({"extra": "streamlit"}):
        continue
    try:
        found = version(req.name)
    except PackageNotFoundError:
        bad.append(f"{req} missing")
        continue
    if not req.specifier.contains(found, prereleases=True):
        bad.append(f"{req} but {found}")
print("; ".join(bad) or "all satisfied")
"""


def first_translation(po: Path) -> tuple[str, str]:
    """The first one-line msgid/msgstr pair with a translation."""
    text = po.read_text(encoding="utf-8")
    for msgid, msgstr in re.findall(r'^msgid "([^"\\]+)"\nmsgstr "([^"\\]+)"$', text, re.M):
        return msgid, msgstr
    raise AssertionError(f"no translated one-line message in {po}")
