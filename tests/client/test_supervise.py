"""The supervisor of ``voicemesh up`` on real service processes: restarts with a backoff, gives up on a
service that cannot start at all. (The whole ``up`` restarting a kill -9'd service is in test_cli.py.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from voicemesh.client.supervise import ServiceState, Supervisor, state_of, status_report
from voicemesh.process import ServiceProcess

pytestmark = pytest.mark.slow


class OneServiceMesh:
    """What the supervisor uses of a LocalMesh (its processes, their states, writing up.json), for one service."""

    def __init__(self, proc: ServiceProcess, state_dir: Path):
        self.processes = {"tts": proc}
        self.states = {"tts": ServiceState(started_at=time.time())}
        self.state_dir = state_dir
        self.writes = 0

    def write_state(self) -> None:
        self.writes += 1
        (self.state_dir / "up.json").write_text(json.dumps({
            "pid": 0, "services": {"tts": {"address": self.processes["tts"].address, "pid": None,
                                           "supervisor": state_of(self.states, "tts")}}}))


def test_a_service_that_never_reaches_serving_is_given_up_after_three_tries(tmp_path):
    # An unknown voice to preload: the service exits with an error before it reports SERVING, every time.
    proc = ServiceProcess("tts", args=["--metrics-port", "-1", "--preload", "nosuch/voice"],
                          log_path=tmp_path / "tts.log").start()
    mesh = OneServiceMesh(proc, tmp_path)
    said: list[str] = []
    supervisor = Supervisor(mesh, say=said.append, backoff_s=0.2)
    started = time.monotonic()
    try:
        while (reason := supervisor.step()) is None:
            assert time.monotonic() - started < 120, said
            time.sleep(0.1)
    finally:
        proc.stop()
    state = mesh.states["tts"]
    assert "tts cannot start: it exited 3 times in a row before reporting SERVING" in reason
    assert state.state == "failed" and state.restarts == 2 and state.exit_code == 1
    assert sum("restarted tts" in line for line in said) == 2
    # The backoff doubled between the tries (0.2 s, then 0.4 s); the third exit is not followed by a restart.
    assert [line.split("restarting it in ")[1].split(" s.")[0] for line in said if "restarting it" in line] == \
        ["0.2", "0.4"]
    assert json.loads((tmp_path / "up.json").read_text())["services"]["tts"]["supervisor"]["state"] == "failed"


def test_status_of_a_gone_up_says_so(tmp_path):
    (tmp_path / "up.json").write_text(json.dumps({"pid": 2**22 + 12345, "services": {}}))
    serving, lines = status_report(tmp_path)
    assert not serving and "is gone" in lines[0]
