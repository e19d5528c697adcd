"""The SDK moves to another orchestrator replica when one refuses a new session for load.

The overloaded replica is a real orchestrator process whose load threshold is set below any event-loop
lag (``--max-loop-lag-ms 0.001``), so it refuses every new session as the runtime does past its
threshold; the other replica is the orchestrator of the package's ``voicemesh up``.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.client.test_agent_session import INSTRUCTIONS, STALL_MS, collect_turn
from voicemesh.client import AgentSession, AgentSessionError, AgentText, TurnDone

pytestmark = pytest.mark.slow


@pytest.fixture
def overloaded(mesh_up, service_process):
    """A second orchestrator of the same mesh and ledger that takes no new session."""
    state = mesh_up.state_dir
    return service_process("orchestrator", args=["--mesh", str(state / "mesh.json"), "--max-loop-lag-ms", "0.001"],
                           env={"VOICEMESH_LEDGER": f"sqlite:///{state / 'ledger.db'}"})


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
