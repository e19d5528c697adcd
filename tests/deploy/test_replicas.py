"""Two replicas behind one mesh entry: the orchestrator spreads new
sessions across both, and every turn of a session goes to the replica that
opened it. Which replica took a turn is read from each replica's own
metrics (voicemesh_messages_received_total of Chat, or of Synthesize for the
TTS streams a session opens per reply) around the turn.

Two forms of "one entry": two addresses listed for the LLM and for the TTS
(as a mesh file or VOICEMESH_MESH_LLM does), and one host name that resolves to
both (as a docker-compose service name with --scale llm=2, or a Kubernetes
headless Service, does). The name is made with a hosts file bind-mounted
over /etc/hosts in a private mount namespace of the orchestrator process only.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from tests.deploy.mesh import LLM, RATE, STT, metric, start, text_turn
from voicemesh.client import AgentSession
from voicemesh.process import ServiceProcess, free_port

pytestmark = pytest.mark.slow

SESSIONS = 4
ROUNDS = 2
TTS = "piper/en_US-joe-medium"
# Generous: the two cores are shared, and a stall must not pass for a fallback here.
FIRST_RESULT_MS = 20000
NAME = "voicemesh-llm-replicas"
# Runs a command with HOSTS bind-mounted over /etc/hosts, seen by that process tree only.
HOSTS_WRAPPER = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                 'mount --bind "$0" /etc/hosts && exec "$@"']


class WithHostsFile(ServiceProcess):
    """``voicemesh serve`` that resolves names through its own hosts file."""

    def __init__(self, service: str, hosts: Path, **kwargs):
        super().__init__(service, **kwargs)
        self.hosts = hosts

    def start(self) -> WithHostsFile:
        cmd = [*HOSTS_WRAPPER, str(self.hosts), sys.executable, "-m", "voicemesh.cli", "serve", self.service,
               "--host", self.host, "--port", str(self.port), *self.args]
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self._log_file, stderr=subprocess.STDOUT)
        return self


async def spread(orchestrator: ServiceProcess, watched: dict[str, tuple[list[int], str]]) -> dict[str, list[list[int]]]:
    """Open SESSIONS sessions and take ROUNDS interleaved turns. ``watched`` maps a name to the
    metrics ports of its replicas and the RPC method they serve; returns, per name and per
    session, the replica that took each turn."""
    def counts(ports: list[int], method: str) -> list[float]:
        return [metric(port, "voicemesh_messages_received_total", method=method) for port in ports]

    served: dict[str, list[list[int]]] = {name: [[] for _ in range(SESSIONS)] for name in watched}
    async with AsyncExitStack() as stack:
        sessions = [
            await stack.enter_async_context(AgentSession(
                address=orchestrator.address, stt=STT, llm=LLM, tts=TTS, input_sample_rate=RATE,
                output_sample_rate=RATE, instructions="Answer in a few words.",
                first_result_timeout_ms=FIRST_RESULT_MS))
            for _ in range(SESSIONS)
        ]
        for round_ in range(ROUNDS):
            for index, session in enumerate(sessions):
                before = {name: counts(*spec) for name, spec in watched.items()}
                turn = await text_turn(session, f"Say the number {index * ROUNDS + round_ + 1}.")
                assert turn.text and turn.audio_s > 0 and not turn.errors, turn
                for name, spec in watched.items():
                    grew = [i for i, (a, b) in enumerate(zip(before[name], counts(*spec), strict=True)) if b > a]
                    assert len(grew) == 1, f"{name}: turn of session {index} reached replicas {grew}"
                    served[name][index].append(grew[0])
    return served


def check_spread(served: list[list[int]]) -> None:
    assert all(len(set(turns)) == 1 for turns in served), f"a session moved between replicas: {served}"
    assert {turns[0] for turns in served} == {0, 1}, f"sessions did not spread over both replicas: {served}"


@pytest.fixture
def stt(tmp_path):
    proc, _ = start("stt", tmp_path)
    try:
        yield proc.wait_serving()
    finally:
        proc.stop()


async def test_sessions_spread_over_two_listed_addresses(tmp_path, stt):
    # Two LLM replicas (one stream per session) and two TTS replicas (a stream per reply).
    replicas = {"llm": [start("llm", tmp_path, tag=f"-{i}") for i in range(2)],
                "tts": [start("tts", tmp_path, "--preload", TTS, tag=f"-{i}") for i in range(2)]}
    orchestrator = None
    try:
        for proc, _ in replicas["llm"] + replicas["tts"]:
            proc.wait_serving()
        env = {"VOICEMESH_MESH_STT": stt.address,
               "VOICEMESH_MESH_LLM": ",".join(proc.address for proc, _ in replicas["llm"]),
               "VOICEMESH_MESH_TTS": ",".join(proc.address for proc, _ in replicas["tts"])}
        orchestrator = ServiceProcess("orchestrator", args=["--metrics-port", "-1", "--max-tokens", "16"], env=env,
                                      log_path=tmp_path / "orchestrator.log").start().wait_serving()
        served = await spread(orchestrator, {"llm": ([m for _, m in replicas["llm"]], "Chat"),
                                             "tts": ([m for _, m in replicas["tts"]], "Synthesize")})
        check_spread(served["llm"])
        check_spread(served["tts"])
    finally:
        if orchestrator is not None:
            orchestrator.stop()
        for proc, _ in replicas["llm"] + replicas["tts"]:
            proc.stop()


async def test_sessions_spread_over_llm_replicas_behind_one_name(tmp_path, stt):
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed to give the orchestrator its own hosts file")
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n127.0.0.1 {NAME}\n127.0.0.2 {NAME}\n")
    resolved = subprocess.run(
        [*HOSTS_WRAPPER, str(hosts), sys.executable, "-c",
         f"import socket; print(sorted({{a[4][0] for a in socket.getaddrinfo({NAME!r}, 1, "
         "type=socket.SOCK_STREAM)}))"],
        capture_output=True, text=True, timeout=30)
    assert resolved.stdout.strip() == "['127.0.0.1', '127.0.0.2']", resolved.stderr
    # Same port, two addresses: what a scaled compose service or a headless Service looks like.
    port = free_port("127.0.0.2")
    replicas = [start("llm", tmp_path, host=host, port=port, tag=f"-{i}")
                for i, host in enumerate(("127.0.0.1", "127.0.0.2"))]
    tts, _ = start("tts", tmp_path, "--preload", TTS)
    orchestrator = None
    try:
        for proc, _ in [*replicas, (tts, 0)]:
            proc.wait_serving()
        env = {"VOICEMESH_MESH_STT": stt.address, "VOICEMESH_MESH_TTS": tts.address,
               "VOICEMESH_MESH_LLM": f"{NAME}:{port}"}
        orchestrator = WithHostsFile("orchestrator", hosts, args=["--metrics-port", "-1", "--max-tokens", "16"],
                                     env=env, log_path=tmp_path / "orchestrator.log")
        orchestrator.start().wait_serving()
        served = await spread(orchestrator, {"llm": ([metrics for _, metrics in replicas], "Chat")})
        check_spread(served["llm"])
    finally:
        if orchestrator is not None:
            orchestrator.stop()
        tts.stop()
        for proc, _ in replicas:
            proc.stop()


def test_the_spread_check_catches_a_pinned_or_moving_session():
    with pytest.raises(AssertionError, match="did not spread"):
        check_spread([[0, 0], [0, 0], [0, 0], [0, 0]])
    with pytest.raises(AssertionError, match="moved"):
        check_spread([[0, 1], [1, 1], [0, 0], [1, 1]])
