"""A whole mesh for the edge tests: ``voicemesh up --wyoming`` (API keys on, one ledger) and a Twilio edge over it."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.client.conftest import UpProcess, start_up, stop_up
from voicemesh.process import ServiceProcess, free_port


@dataclass
class EdgeMesh:
    up: UpProcess
    wyoming_port: int
    twilio: ServiceProcess

    @property
    def key(self) -> str:
        return (self.up.state_dir / "api_key").read_text().strip()

    @property
    def ledger_url(self) -> str:
        return f"sqlite:///{self.up.state_dir / 'ledger.db'}"

    def stream_url(self, twilio: ServiceProcess | None = None) -> str:
        return f"ws://{(twilio or self.twilio).address}/twilio/media-stream"


def start_twilio(folder: Path, orchestrator: str, *args: str, name: str = "twilio") -> ServiceProcess:
    """``voicemesh serve twilio`` on a free port, once its health route answers."""
    proc = ServiceProcess("twilio", args=["--orchestrator", orchestrator, *args], log_path=folder / f"{name}.log")
    proc.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"http://{proc.address}/health", timeout=2).read() == b"ok":
                return proc
        except OSError:
            if proc.proc.poll() is not None:
                break
        time.sleep(0.2)
    proc.stop()
    pytest.fail(f"the twilio edge did not come up:\n{proc.log_tail()}")


@pytest.fixture(scope="package")
def edge_mesh(tmp_path_factory) -> Iterator[EdgeMesh]:
    folder = tmp_path_factory.mktemp("edges")
    wyoming_port = free_port()
    up = start_up(folder / "state", "--wyoming", "--wyoming-port", str(wyoming_port))
    twilio = None
    try:
        twilio = start_twilio(folder, up.orchestrator, "--api-key-file", str(up.state_dir / "api_key"),
                              "--instructions", "Answer the question in English with one short, factual sentence.")
        yield EdgeMesh(up, wyoming_port, twilio)
    finally:
        if twilio is not None:
            twilio.stop()
        stop_up(up)
