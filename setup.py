"""Build step: compile the gettext catalogs (`.po` → `.mo`); everything else is in
pyproject.toml.

The `.mo` files are build products (git-ignored): a wheel gets them in its build
directory, an editable install (`pip install -e .`) next to their `.po` in the
source tree, which is what it imports.
"""

from __future__ import annotations

from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from setuptools import setup
from setuptools.command.build_py import build_py

LOCALE = Path("src/wsgate/locale")


def compile_catalogs(destination_root: Path) -> list[str]:
    """Write each `src/<package>/locale/*/LC_MESSAGES/*.po` as a `.mo` under
    `destination_root` (at the same path below `src`); fuzzy entries are left out."""
    written = []
    for po_path in sorted(LOCALE.glob("*/LC_MESSAGES/*.po")):
        mo_path = destination_root / po_path.relative_to("src").with_suffix(".mo")
        with po_path.open("rb") as po_file:
            catalog = read_po(po_file, locale=po_path.parts[-3], domain=po_path.stem)
        mo_path.parent.mkdir(parents=True, exist_ok=True)
        with mo_path.open("wb") as mo_file:
            write_mo(mo_file, catalog, use_fuzzy=False)
        written.append(str(mo_path))
    return written


class BuildPyWithCatalogs(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            # An editable install imports the source tree: the catalogs go there.
            compile_catalogs(Path("src"))
        else:
            self._catalogs = compile_catalogs(Path(self.build_lib))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), *getattr(self, "_catalogs", [])]


setup(cmdclass={"build_py": BuildPyWithCatalogs})
