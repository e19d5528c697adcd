"""The Node.js package packed with ``npm pack`` and installed into a folder outside the repository."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE_PACKAGE = ROOT / "clients" / "node"


@dataclass
class InstalledPackage:
    tarball: Path
    app: Path  # a project with the tarball installed in node_modules and examples/agent.ts compiled to out/


def run(*args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="session")
def node_package(tmp_path_factory) -> InstalledPackage:
    """``npm pack`` of clients/node, installed without a registry (its dependencies are bundled)."""
    npm, node = shutil.which("npm"), shutil.which("node")
    assert npm and node, "Node.js and npm are required for the Node package tests"
    tsc = NODE_PACKAGE / "node_modules" / ".bin" / "tsc"
    assert tsc.exists(), "run scripts/dev setup (npm ci in clients/node)"
    folder = tmp_path_factory.mktemp("node-package")
    assert not folder.resolve().is_relative_to(ROOT)
    packed = run(npm, "pack", "--silent", "--pack-destination", str(folder), cwd=NODE_PACKAGE)
    tarball = folder / packed.stdout.strip().splitlines()[-1]
    app = folder / "app"
    app.mkdir()
    (app / "package.json").write_text('{"name": "voicemesh-test-app", "private": true}\n')
    run(npm, "install", "--offline", "--no-audit", "--no-fund", str(tarball), cwd=app)
    # The example as a user would build it: TypeScript against the installed package's types.
    example = app / "node_modules" / "voicemesh" / "examples" / "agent.ts"
    shutil.copy(example, app / "agent.ts")
    run(str(tsc), "--strict", "--module", "commonjs", "--target", "es2022", "--types", "node",
        "--typeRoots", "node_modules/voicemesh/node_modules/@types", "--outDir", "out", "agent.ts", cwd=app)
    return InstalledPackage(tarball=tarball, app=app)
