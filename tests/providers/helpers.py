"""What the provider tests share: the STT double in a child process, and a mesh of real services."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from voicemesh.mesh import MeshConfig
from voicemesh.process import ServiceProcess, free_port

KEY = "dg-aai-test-key-0123"


class SttDouble:
    """tests/providers/stt_double.py in a child process on a free loopback port."""

    def __init__(self, *args: str):
        self.port = free_port()
        self.base_url = f"ws://127.0.0.1:{self.port}"
        self._proc = subprocess.Popen([sys.executable, "-m", "tests.providers.stt_double", "--port", str(self.port),
                                       "--api-key", KEY, *args], stdout=subprocess.PIPE, text=True)
        line = self._proc.stdout.readline()
        if line.strip() != "READY":
            self.stop()
            raise RuntimeError(f"the STT double did not start: {line!r}")

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(10)


@contextlib.contextmanager
def mesh(folder: Path, services: dict[str, tuple[list[str], dict[str, str]]]) -> Iterator[str]:
    """STT, LLM and TTS services (each with its extra args and environment, e.g. a provider's key and URL
    pointing at a double) and an orchestrator over them; yields the orchestrator's address."""
    procs = {name: ServiceProcess(name, args=["--metrics-port", "-1", *args], env=env, log_path=folder / f"{name}.log")
             for name, (args, env) in services.items()}
    started = []
    try:
        for proc in procs.values():
            started.append(proc.start())
        for proc in procs.values():
            proc.wait_serving()
        MeshConfig({m: {"*": [p.address]} for m, p in procs.items()}).write(folder / "mesh.json")
        orchestrator = ServiceProcess("orchestrator", args=["--metrics-port", "-1", "--mesh", str(folder / "mesh.json"),
                                                            "--max-tokens", "40"], log_path=folder / "orchestrator.log")
        started.append(orchestrator.start())
        yield orchestrator.wait_serving().address
    finally:
        for proc in reversed(started):
            proc.stop()
