"""The import layering of docs/architecture.md, read from the source with `ast`.

Layers: 0 foundations, 1 pure cores, 2 parts, 3 entry points. A module imports
only from its own part and from lower layers; parts never import each other.
Function-level imports count too (every `import` node in the file).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import REPO

PACKAGE = REPO / "src" / "wsgate"

# Longest prefix wins: `wsgate.logs.events` is a foundation, the rest of `logs` a part.
LAYERS: dict[str, int] = {
    "wsgate": 0, "wsgate.i18n": 0, "wsgate.config": 0, "wsgate.logs.events": 0,
    "wsgate.policy": 1, "wsgate.guard.policy": 1,
    "wsgate.edge": 2, "wsgate.guard": 2, "wsgate.doctor": 2, "wsgate.logs": 2,
    "wsgate.worker": 2,
    "wsgate.cli": 3, "wsgate.__main__": 3, "wsgate.demo": 3,
}
# The sans-I/O cores: no event loop, no processes, no threads.
CORES = ("policy/", "guard/policy.py", "edge/http1.py", "edge/exchange.py",
         "edge/frames.py", "doctor/diagnosis.py", "doctor/model.py", "logs/query.py",
         "logs/join.py")
IO_MODULES = frozenset({"asyncio", "subprocess", "threading", "selectors", "uvloop"})


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports (absolute names; relative imports resolved)."""
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" \
        else module_name(path)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            # `from wsgate.policy import headers` imports wsgate.policy.headers.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def group(module: str) -> str:
    """The longest LAYERS key that `module` is or lies under."""
    keys = [k for k in LAYERS if module == k or module.startswith(k + ".")]
    return max(keys, key=len)


def part(module: str) -> str:
    """The part a module belongs to: `wsgate.edge.server` → `wsgate.edge`."""
    return ".".join(module.split(".")[:2])


def wsgate_imports(path: Path) -> list[str]:
    own = module_name(path)
    return sorted(m for m in imports(path) if m.split(".")[0] == "wsgate" and m != own
                  and _exists(m))


def _exists(module: str) -> bool:
    """A module or package in the source tree (not an attribute such as `wsgate.__version__`)."""
    relative = Path(*module.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").is_file() or (PACKAGE / relative).is_dir()


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    assert SOURCES
    for path in SOURCES:
        group(module_name(path))  # raises ValueError (empty max) if none fits


def violation(importer: str, imported: str) -> str | None:
    """Why `importer` may not import `imported`, or None when it may."""
    if part(imported) == part(importer) and group(imported) == group(importer):
        return None  # within its own part
    level, target = LAYERS[group(importer)], LAYERS[group(imported)]
    if level == 3 or target < level or target == level == 0:
        return None
    return (f"{importer} (layer {level}) imports {imported} (layer {target}): "
            "see docs/architecture.md")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_reaches_up_or_across(path: Path) -> None:
    importer = module_name(path)
    problems = [v for m in wsgate_imports(path) if (v := violation(importer, m))]
    assert not problems, problems


def test_policy_imports_nothing_but_config() -> None:
    for path in (PACKAGE / "policy").rglob("*.py"):
        for imported in wsgate_imports(path):
            assert imported == "wsgate.config" or imported.startswith("wsgate.policy"), (
                f"{module_name(path)} imports {imported}")


def test_doctor_imports_neither_edge_nor_guard() -> None:
    for path in (PACKAGE / "doctor").rglob("*.py"):
        for imported in wsgate_imports(path):
            assert part(imported) not in ("wsgate.edge", "wsgate.guard"), (
                f"{module_name(path)} imports {imported}")


@pytest.mark.parametrize("core", CORES)
def test_cores_do_no_io(core: str) -> None:
    paths = sorted((PACKAGE / core).rglob("*.py")) if core.endswith("/") else [PACKAGE / core]
    assert paths and all(p.is_file() for p in paths), core
    for path in paths:
        used = {m.split(".")[0] for m in imports(path)} & IO_MODULES
        assert not used, f"{module_name(path)} imports {sorted(used)}: keep I/O in the drivers"


@pytest.mark.parametrize(("importer", "imported"), [
    ("wsgate.policy.headers", "wsgate.edge.server"),  # a core reaching up
    ("wsgate.config", "wsgate.policy.routes"),  # a foundation reaching up
    ("wsgate.logs.events", "wsgate.logs.model"),  # the schema reaching into its part
    ("wsgate.edge.server", "wsgate.doctor.model"),  # across parts
    ("wsgate.guard.policy", "wsgate.policy.headers"),  # across cores
    ("wsgate.doctor.probes", "wsgate.guard.asgi"),
])
def test_the_rule_refuses_what_the_page_forbids(importer: str, imported: str) -> None:
    assert violation(importer, imported) is not None


@pytest.mark.parametrize(("importer", "imported"), [
    ("wsgate.edge.admission", "wsgate.guard.policy"),  # a part using a core
    ("wsgate.guard.access", "wsgate.logs.events"),  # a part using the schema
    ("wsgate.logs.model", "wsgate.logs.events"),
    ("wsgate.config", "wsgate.i18n"),  # foundations among themselves
    ("wsgate.demo.stack", "wsgate.edge.command"),  # entry points use anything
])
def test_the_rule_allows_what_the_page_allows(importer: str, imported: str) -> None:
    assert violation(importer, imported) is None


def test_imports_are_read_from_the_whole_file() -> None:
    """Function-level and relative imports count, and `from pkg import module` names
    the module."""
    found = imports(PACKAGE / "cli.py")
    assert "wsgate.i18n" in found and "importlib" in found
    assert "wsgate.policy.headers" in imports(PACKAGE / "worker" / "rules.py")
