"""The Node.js example client (clients/node) against a real mesh."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.orchestrator.conftest import mesh, orchestrator, transcribe  # noqa: F401 - module-scoped fixtures
from voicemesh.audio import convert, read_wav

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "node"
QUESTION = ROOT / "voicemesh" / "samples" / "question.wav"


def node_client(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    node = shutil.which("node")
    assert node, "Node.js is required for the Node client test"
    assert (CLIENT / "node_modules" / "@grpc" / "grpc-js").exists(), "run scripts/dev setup (npm ci in clients/node)"
    return subprocess.run([node, str(CLIENT / "talk.js"), *args], capture_output=True, text=True, timeout=timeout)


def test_help_and_bad_options():
    assert "usage: node talk.js" in node_client("--help").stdout
    bad = node_client("--bogus", "1")
    assert bad.returncode == 2 and "unknown or incomplete option --bogus" in bad.stderr


def test_spoken_conversation_from_node(orchestrator, tmp_path):  # noqa: F811 - fixture
    out = tmp_path / "answer.wav"
    result = node_client("--address", orchestrator.address, "--in", str(QUESTION), "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "voicemesh.v1.AgentService" in result.stdout and "grpc.health.v1.Health" in result.stdout
    assert "health: SERVING" in result.stdout
    user_lines = [line for line in result.stdout.splitlines() if line.startswith("user: ")]
    assert "capital of france" in user_lines[0].lower()
    assert "voice-to-voice" in result.stdout
    pcm, rate = read_wav(out)
    assert len(pcm) / 2 / rate > 0.5
    assert transcribe(convert(pcm, rate, 16000)).strip()


def test_dead_address_fails_clearly(tmp_path):
    from voicemesh.process import free_port

    result = node_client("--address", f"127.0.0.1:{free_port()}", "--in", str(QUESTION), "--timeout", "5")
    assert result.returncode == 1
    assert result.stderr.startswith("talk.js:")


@pytest.mark.parametrize("content", [b"RIFF0000WAVEjunk", b"hello"])
def test_bad_wav_fails_clearly(tmp_path, content):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    result = node_client("--in", str(path))
    assert result.returncode == 1 and "talk.js:" in result.stderr
