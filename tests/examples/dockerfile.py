"""A small Dockerfile reader: enough to check the examples and run their CMD outside Docker.

Docker is not available on the test machine, so the tests read the instructions
the way the builder does (continuations, comments, ENV/ARG defaults, exec-form
CMD) and then run the command with this machine's Python.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str
    line: int


def instructions(text: str) -> list[Instruction]:
    result: list[Instruction] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comments inside a continued instruction are dropped by Docker
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, value = full.partition(" ")
        result.append(Instruction(keyword.upper(), value.strip(), start))
    if pending:
        raise ValueError(f"line {start}: continuation runs past the end of the file")
    return result


def key_values(value: str) -> dict[str, str]:
    """ENV/ARG `k=v k2="v 2"` pairs (the `ENV k v` legacy form is not used here)."""
    pairs: dict[str, str] = {}
    for word in shlex.split(value):
        key, sep, val = word.partition("=")
        pairs[key] = val if sep else ""
    return pairs


@dataclass(frozen=True)
class Dockerfile:
    path: Path
    steps: list[Instruction]

    @classmethod
    def read(cls, path: Path) -> Dockerfile:
        return cls(path, instructions(path.read_text()))

    def all(self, keyword: str) -> list[Instruction]:
        return [step for step in self.steps if step.keyword == keyword]

    def env(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for step in self.all("ENV"):
            merged.update(key_values(step.value))
        return merged

    def args(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for step in self.all("ARG"):
            merged.update(key_values(step.value))
        return merged

    def cmd(self) -> list[str]:
        steps = self.all("CMD")
        if len(steps) != 1:
            raise ValueError(f"{self.path.name}: expected one CMD, found {len(steps)}")
        parsed = json.loads(steps[0].value)  # exec form: a JSON array
        if not (isinstance(parsed, list) and all(isinstance(p, str) for p in parsed)):
            raise ValueError(f"{self.path.name}: CMD is not a JSON array of strings")
        return parsed
