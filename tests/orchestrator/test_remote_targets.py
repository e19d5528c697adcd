"""Through the orchestrator too, a session's base_url reaches only what the LLM service's operator allows, and
never with the operator's key (issue 20, finding 1); the real orchestrator and model services, a capture server."""

from __future__ import annotations

import grpc
import pytest

from tests.orchestrator.client import AgentClient, session_config
from tests.remote.capture import CaptureServer
from voicemesh.v1 import common_pb2

OPERATOR_KEY = "sk-operator-secret-0123456789"


@pytest.fixture
def captures():
    servers = CaptureServer().start(), CaptureServer().start()
    yield servers
    for server in servers:
        server.stop()


async def failure(address: str, base_url: str) -> tuple[str, str]:
    """The code and message a session's first turn fails with (an error event, or the stream's status)."""
    config = session_config(llm=("openai/gpt-4.1-mini",))
    config.llm.candidates[0].backend.CopyFrom(common_pb2.BackendOptions(base_url=base_url))
    async with AgentClient(address, config) as session:
        session.send(text="Hello?")
        try:
            error = (await session.wait_for(lambda e: e.kind == "error", timeout=90)).event
        except grpc.aio.AioRpcError as ended:
            return ended.code().name, ended.details()
    return error.code, error.message


async def test_a_session_base_url_gets_no_operator_key_and_an_unlisted_one_no_request(mesh, service_process,
                                                                                         captures, tmp_path):
    allowed, unlisted = captures
    llm = service_process("llm", env={"VOICEMESH_OPENAI_API_KEY": OPERATOR_KEY,
                                      "VOICEMESH_ALLOWED_BASE_URLS": allowed.base_url})
    path = tmp_path / "mesh.json"
    mesh.config(llm={"*": [llm.address]}).write(path)
    orchestrator = service_process("orchestrator", args=["--mesh", str(path)])

    code, message = await failure(orchestrator.address, unlisted.base_url)
    assert code == "PERMISSION_DENIED" and "base_url" in message, (code, message)
    assert unlisted.seen == []

    code, message = await failure(orchestrator.address, allowed.base_url)
    assert code == "INVALID_ARGUMENT" and "HTTP 400" in message, (code, message)
    assert "upstream-secret" not in message  # the remote's body stays in the LLM service's log
    assert allowed.seen and all(seen.authorization == "" for seen in allowed.seen), allowed.seen
