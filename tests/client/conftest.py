"""A whole local mesh started by ``voicemesh up`` in a child process, shared by this package's tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from voicemesh.client.local import free_port_base
from voicemesh.process import health

SERVICES = ("orchestrator", "stt", "llm", "tts")


@dataclass
class UpProcess:
    """A running ``voicemesh up``."""

    proc: subprocess.Popen
    state_dir: Path
    log_path: Path
    addresses: dict[str, str]
    pids: dict[str, int]

    @property
    def orchestrator(self) -> str:
        return self.addresses["orchestrator"]

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_up(state_dir: Path, *extra: str, timeout: float = 240.0) -> UpProcess:
    """Run ``voicemesh up`` on free ports; return once all four services report SERVING."""
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "up-output.log"
    base = free_port_base()
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voicemesh.cli", "up", "--port-base", str(base), "--state-dir", str(state_dir),
             *extra],
            stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + timeout
    while "VoiceMesh is up" not in log_path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
            logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in (state_dir / "logs").glob("*.log"))
            pytest.fail(f"voicemesh up did not come up:\n{log_path.read_text(errors='replace')}\n{logs}")
        time.sleep(0.2)
    state = json.loads((state_dir / "up.json").read_text())
    services = state["services"]
    return UpProcess(proc=proc, state_dir=state_dir, log_path=log_path,
                     addresses={n: services[n]["address"] for n in SERVICES},
                     pids={n: services[n]["pid"] for n in SERVICES})


def stop_up(up: UpProcess, timeout: float = 60.0) -> int:
    if up.proc.poll() is None:
        up.proc.send_signal(signal.SIGTERM)
    return up.proc.wait(timeout)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@pytest.fixture(scope="package")
def _up_holder(tmp_path_factory):
    holder: dict[str, UpProcess] = {}
    yield holder, tmp_path_factory
    if "up" in holder:
        stop_up(holder["up"])


@pytest.fixture
def mesh_up(_up_holder, monkeypatch) -> UpProcess:
    """The package's running ``voicemesh up`` (started again if a test stopped it).

    Its state directory is the test's VOICEMESH_STATE_DIR, so the SDK and ``voicemesh talk`` find the API
    key ``up`` created there, as they find ~/.voicemesh/api_key for a user.
    """
    holder, factory = _up_holder
    if "up" not in holder or holder["up"].proc.poll() is not None:
        holder["up"] = start_up(factory.mktemp("up"))
    monkeypatch.setenv("VOICEMESH_STATE_DIR", str(holder["up"].state_dir))
    monkeypatch.delenv("VOICEMESH_API_KEY", raising=False)
    return holder["up"]


def all_serving(up: UpProcess) -> dict[str, str | None]:
    return {name: health(address) for name, address in up.addresses.items()}
