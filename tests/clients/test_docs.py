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
    code = code.replace('"voicemesh/samples/', f'"{ROOT}/voicemesh/samples/')
    return re.sub(r"127\.0\.0\.1:(5006[0-3])", lambda m: ports[m.group(1)], code)


def test_the_doc_has_examples():
    assert len(blocks("python")) == 4
    assert len(blocks("js")) == 1


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


def test_node_example(mesh, orchestrator, tmp_path):  # noqa: F811 - fixtures
    node = shutil.which("node")
    assert node, "Node.js is required"
    script = tmp_path / "chat.js"
    script.write_text(localize(blocks("js")[0], mesh, orchestrator))
    client = ROOT / "clients" / "node"
    result = subprocess.run([node, str(script)], cwd=client, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "NODE_PATH": str(client / "node_modules")})
    assert result.returncode == 0, result.stderr
    assert "paris" in result.stdout.lower()
