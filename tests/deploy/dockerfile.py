"""A small Dockerfile reader for the deployment tests: stages, their
instructions, and what each build target pip-installs.

These fast checks read the Dockerfile without building it (test_stack.py
builds and runs it, in minutes): which stages a target is made from
(``FROM`` and ``COPY --from``), and which project extras and extra packages
the ``pip install`` commands in those stages install.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_SOURCE = "/src"  # where the Dockerfile's source stage puts the project
# pip options followed by a value that is not a requirement.
VALUE_OPTIONS = {"--wheel-dir", "-w", "--find-links", "-f", "--index-url", "-i", "--target", "-t"}


@dataclass
class Stage:
    """One ``FROM ... AS name`` block."""

    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for key, args in self.instructions if key == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def copied_from(self) -> list[str]:
        return [m.group(1) for args in self.all("COPY") if (m := re.match(r"--from=(\S+)", args))]


def logical_lines(text: str) -> list[str]:
    """Instructions with backslash continuations joined and comments dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current.strip():
            lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def parse(text: str) -> dict[str, Stage]:
    """Stages by name (every stage here must be named)."""
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in logical_lines(text):
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", args, re.IGNORECASE)
            if not match:
                raise ValueError(f"unnamed stage: FROM {args}")
            current = Stage(name=match.group(2), base=match.group(1))
            stages[current.name] = current
        elif current is not None:
            current.instructions.append((keyword, args))
    return stages


def lineage(stages: dict[str, Stage], target: str) -> list[Stage]:
    """``target`` and every stage it is built on or copies from, transitively."""
    seen: list[Stage] = []
    todo = [target]
    while todo:
        name = todo.pop()
        stage = stages.get(name)
        if stage is None or stage in seen:
            continue
        seen.append(stage)
        todo.append(stage.base)
        todo.extend(stage.copied_from())
    return seen


def pip_installs(stage: Stage) -> list[list[str]]:
    """The arguments of every ``pip install`` (and ``pip wheel``) in the stage's RUN lines."""
    found = []
    for run in stage.all("RUN"):
        for command in re.split(r"&&|;", run):
            words = shlex.split(command)
            for i, word in enumerate(words):
                if word.endswith("pip") and i + 1 < len(words) and words[i + 1] in ("install", "wheel"):
                    found.append(words[i + 2:])
                    break
    return found


@dataclass
class Installs:
    """What a build target installs: project extras and other requirements."""

    extras: set[str] = field(default_factory=set)
    project: bool = False
    packages: set[str] = field(default_factory=set)


def installs(stages: dict[str, Stage], target: str) -> Installs:
    """Project extras and other packages pip-installs in ``target``'s lineage.

    ``ARG`` defaults are substituted, so ``pip wheel "${LLAMA_CPP_PYTHON}"``
    counts as the package the argument names.
    """
    result = Installs()
    for stage in lineage(stages, target):
        args = dict(_arg_default(a) for a in stage.all("ARG"))
        for words in pip_installs(stage):
            skip = False
            for word in words:
                if skip:
                    skip = False
                    continue
                if word in VALUE_OPTIONS:
                    skip = True
                    continue
                word = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), word)
                if word.startswith("-"):
                    continue
                if word == PROJECT_SOURCE or word.startswith(PROJECT_SOURCE + "["):
                    result.project = True
                    if "[" in word:
                        result.extras |= set(word[word.index("[") + 1:-1].split(","))
                else:
                    result.packages.add(re.split(r"[<>=!~\[ ]", word, maxsplit=1)[0])
    return result


def _arg_default(text: str) -> tuple[str, str]:
    name, _, default = text.partition("=")
    return name, default


def exec_form(args: str) -> list[str]:
    """A JSON-array instruction argument (``CMD [...]``), after any options like ``--interval``."""
    return json.loads(args[args.index("["):])


def load(path: str | Path) -> dict[str, Stage]:
    return parse(Path(path).read_text())
