"""The examples of docs/clients.md run as written against a real mesh."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.orchestrator.conftest import mesh, orchestrator  # noqa: F401 - module-scoped fixtures

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "clients.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)


def localize(code: str, mesh, orchestrator) -> str:  # noqa: F811 - fixtures passed in
    ports = {"50060": orchestrator.address, "50061": mesh.stt.address, "50062": mesh.llm.address,
             "50063": mesh.tts.address}
    code = re.sub(r"""(['"])voicemesh/samples/""", lambda m: f"{m.group(1)}{ROOT}/voicemesh/samples/", code)
    return re.sub(r"127\.0\.0\.1:(5006[0-3])", lambda m: ports[m.group(1)], code)


def test_the_doc_has_examples():
    assert len(blocks("python")) == 4
    assert len(blocks("js")) == 1
    assert len(blocks("ts")) == 1


@pytest.mark.parametrize("index", range(4))
def test_python_example(index, mesh, orchestrator, tmp_path):  # noqa: F811 - fixtures
    script = tmp_path / f"example_{index}.py"
    script.write_text(localize(blocks("python")[index], mesh, orchestrator))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=180, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    if index == 2:
        assert (tmp_path / "hello.wav").stat().st_size > 24000
    expected = ["final: What is the capital of France?", "Paris", "spoke: Hello from VoiceMesh.", "voice-to-voice"]
    assert expected[index].lower() in result.stdout.lower(), result.stdout


def run_node(script: Path, app: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "NODE_PATH"}
    return subprocess.run([shutil.which("node"), str(script)], cwd=app, capture_output=True, text=True, timeout=180,
                          env=env)


def test_node_example(mesh, orchestrator, node_package):  # noqa: F811 - fixtures
    """The JavaScript example, run where the packed package is installed (outside the repository)."""
    script = node_package.app / "doc_example.js"
    script.write_text(localize(blocks("js")[0], mesh, orchestrator))
    result = run_node(script, node_package.app)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^user: .*capital of france", result.stdout, flags=re.I | re.M), result.stdout
    assert "paris" in result.stdout.lower() and "voice-to-voice:" in result.stdout


def test_node_typescript_example(mesh, orchestrator, node_package):  # noqa: F811 - fixtures
    """The TypeScript example: type-checked against the installed package's types, compiled, run."""
    source = node_package.app / "doc_example_tools.ts"
    source.write_text(localize(blocks("ts")[0], mesh, orchestrator))
    tsc = ROOT / "clients" / "node" / "node_modules" / ".bin" / "tsc"
    compiled = subprocess.run([str(tsc), "--strict", "--module", "commonjs", "--target", "es2022", "--types", "node",
                               "--typeRoots", "node_modules/voicemesh/node_modules/@types", "--outDir", "out",
                               source.name], cwd=node_package.app, capture_output=True, text=True, timeout=120)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    result = run_node(node_package.app / "out" / "doc_example_tools.js", node_package.app)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r'^tool get_weather\(\{"city": ?"[^"]+"', result.stdout, flags=re.M), result.stdout
    assert re.search(r"^agent: \S", result.stdout, flags=re.M), result.stdout
