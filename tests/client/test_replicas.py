"""An orchestrator refuses new sessions for load, and the SDK moves to another replica.

Two ways to load a real orchestrator process deterministically: a threshold below any event-loop lag
(``--max-loop-lag-ms 0.001``: it refuses every new session as the runtime does past its threshold), or
starving it of CPU (SIGSTOP for 0.3 s, SIGCONT for 0.1 s, over and over: its event loop wakes 0.3 s late,
as on an overloaded machine). The other replica is the orchestrator of the package's ``voicemesh up``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import pytest

from tests.client.test_agent_session import INSTRUCTIONS, STALL_MS, collect_turn
from voicemesh.client import AgentAudio, AgentSession, AgentSessionError, AgentText, TurnDone, TurnMetrics
from voicemesh.client.session import DEFAULT_TTS

pytestmark = pytest.mark.slow


def orchestrator(mesh_up, service_process, max_loop_lag_ms: str, env: dict | None = None):
    """A second orchestrator of the same mesh and ledger."""
    state = mesh_up.state_dir
    return service_process("orchestrator", args=["--mesh", str(state / "mesh.json"), "--max-loop-lag-ms",
                                                 max_loop_lag_ms],
                           env={"VOICEMESH_LEDGER": f"sqlite:///{state / 'ledger.db'}", **(env or {})})


@pytest.fixture
def overloaded(mesh_up, service_process):
    """An orchestrator that takes no new session."""
    proc = orchestrator(mesh_up, service_process, "0.001")
    time.sleep(0.5)  # its load monitor samples every 0.1 s and admits until it has measured the loop once
    return proc


class Starve:
    """Stops and continues a process, over and over, until the block ends (then it runs freely)."""

    def __init__(self, pid: int):
        self.pid, self.done = pid, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.is_set():
            os.kill(self.pid, signal.SIGSTOP)
            time.sleep(0.3)
            os.kill(self.pid, signal.SIGCONT)
            time.sleep(0.1)

    def __enter__(self) -> Starve:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()
        os.kill(self.pid, signal.SIGCONT)


def test_a_starved_orchestrator_refuses_new_sessions_and_the_admitted_one_goes_on(mesh_up, service_process):
    orch = orchestrator(mesh_up, service_process, "50")

    def session() -> AgentSession:
        return AgentSession(address=orch.address, instructions=INSTRUCTIONS, first_result_timeout_ms=STALL_MS)

    async def run() -> tuple[AgentSessionError, list]:
        async with session() as admitted:
            with Starve(orch.proc.pid):
                await asyncio.sleep(1.0)  # a second of lag measured
                with pytest.raises(AgentSessionError) as refused:
                    await session().start()
                # The admitted session is still served: a whole turn, while the process stays starved.
                await admitted.send_text("What is the capital of France?")
                events = await collect_turn(admitted, send_silence=False)
        return refused.value, events

    refused, events = asyncio.run(run())
    assert refused.code == "RESOURCE_EXHAUSTED" and refused.reason == "OVERLOADED"
    assert "overloaded, retry elsewhere" in refused.message
    assert any(isinstance(e, AgentText) and e.delta.strip() for e in events)
    assert any(isinstance(e, TurnDone) for e in events)

    async def admitted_again() -> str:
        for _ in range(50):  # the lag of the last second fades once the process runs freely
            try:
                async with session() as again:
                    return again.session_id
            except AgentSessionError as error:
                assert error.reason == "OVERLOADED", error
                await asyncio.sleep(0.2)
        raise AssertionError("the orchestrator still refuses 10 s after its load is gone")

    assert asyncio.run(admitted_again())


def test_an_overloaded_replica_refuses_and_the_sdk_opens_the_session_on_the_next(mesh_up, overloaded):
    async def alone() -> AgentSessionError:
        with pytest.raises(AgentSessionError) as refused:
            await AgentSession(address=overloaded.address, instructions=INSTRUCTIONS).start()
        return refused.value

    refused = asyncio.run(alone())
    assert refused.code == "RESOURCE_EXHAUSTED" and refused.reason == "OVERLOADED"
    assert "overloaded, retry elsewhere" in refused.message

    async def with_a_replica() -> tuple[str, list]:
        session = AgentSession(address=f"{overloaded.address},{mesh_up.orchestrator}", instructions=INSTRUCTIONS,
                               first_result_timeout_ms=STALL_MS)
        async with session:
            await session.send_text("What is the capital of France?")
            return session.address, await collect_turn(session, send_silence=False)

    address, events = asyncio.run(with_a_replica())
    assert address == mesh_up.orchestrator
    assert any(isinstance(e, AgentText) and e.delta.strip() for e in events)
    assert any(isinstance(e, TurnDone) for e in events)


def test_the_orchestrator_takes_the_next_tts_replica_when_one_refuses_for_load(mesh_up, service_process):
    state = mesh_up.state_dir
    refusing = service_process("tts", args=["--max-loop-lag-ms", "0.001", "--preload", DEFAULT_TTS],
                               env={"VOICEMESH_LEDGER": f"sqlite:///{state / 'ledger.db'}"})
    # Two TTS replicas; sessions rotate which one they try first, so one of two sessions starts at the refusing one.
    orch = orchestrator(mesh_up, service_process, "0",
                        env={"VOICEMESH_MESH_TTS": f"{refusing.address},{mesh_up.addresses['tts']}"})

    async def turn() -> list:
        async with AgentSession(address=orch.address, instructions=INSTRUCTIONS,
                                first_result_timeout_ms=STALL_MS) as session:
            await session.send_text("What is the capital of France?")
            return await collect_turn(session, send_silence=False)

    for _ in range(2):
        events = asyncio.run(turn())
        assert any(isinstance(e, AgentAudio) and e.audio for e in events)
        assert any(isinstance(e, TurnDone) for e in events)
        fallbacks = [f for e in events if isinstance(e, TurnMetrics) for f in e.fallbacks]
        assert all(refusing.address in f and "overloaded, retry elsewhere" in f for f in fallbacks), fallbacks
        if fallbacks:
            break
    assert fallbacks, "no session tried the refusing replica first"
