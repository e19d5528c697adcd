"""Tool calls through the orchestrator: the agent calls, the client runs the tool, the answer uses the result."""

from __future__ import annotations

import json

import pytest

from tests.orchestrator.client import AgentClient, session_config
from voicemesh.v1 import agent_pb2, llm_pb2

pytestmark = pytest.mark.slow

WEATHER = llm_pb2.Tool(
    name="get_weather", description="The current weather in a city.",
    parameters_json=json.dumps({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
)


async def test_a_forced_tool_call_goes_to_the_client_and_its_result_into_the_answer(orchestrator):
    config = session_config(tools=[WEATHER], tool_choice=llm_pb2.ToolChoice(mode="function", name="get_weather"))
    async with AgentClient(orchestrator.address, config) as s:
        s.send(text="What is the weather in Paris?")
        call = (await s.wait_for(lambda e: e.kind == "tool_call", timeout=120)).event
        assert call.name == "get_weather" and call.id
        arguments = json.loads(call.arguments_json)
        assert isinstance(arguments.get("city"), str) and arguments["city"], arguments
        assert not s.agent_audio(1)  # nothing is said before the result is in
        s.send(tool_result=agent_pb2.ToolResult(call_id=call.id, output=json.dumps(
            {"city": arguments["city"], "weather": "sunny", "temperature_c": 21})))
        done = await s.turn_done(1, timeout=120)
        assert done.text and s.agent_audio(1)
        # Two generations served the turn: the call, then the answer (in auto mode, with the result).
        assert len([u for u in s.of("usage", 1) if u.service == "llm"]) == 2
        assert len(s.of("tool_call")) == 1
        # A result for a call nobody made is an error event; the session goes on.
        s.send(tool_result=agent_pb2.ToolResult(call_id="call_nope", output="{}"))
        error = (await s.wait_for(lambda e: e.kind == "error")).event
        assert error.code == "INVALID_ARGUMENT" and "call_nope" in error.message
