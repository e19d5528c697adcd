"""Sessions on a realtime model (the local cascade of the realtime service) and switches to and from the pipeline."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import grpc
import pytest

from tests.orchestrator.client import LLM, RATE, STT, TTS, AgentClient, choice, session_config
from tests.deploy.mesh import metric
from tests.orchestrator.conftest import streams_open, transcribe, write_mesh
from tests.speech import speak, silence, wer
from voicemesh.process import ServiceProcess, free_port
from voicemesh.v1 import agent_pb2, agent_pb2_grpc, common_pb2, llm_pb2

pytestmark = pytest.mark.slow

REALTIME = "voicemesh/cascade"
REALTIME_METRICS: dict[str, int] = {}  # the realtime service's metrics port, picked as it starts (not at import)
INSTRUCTIONS = "You are a helpful assistant. Answer in one short sentence."


@pytest.fixture(scope="module")
def realtime_orchestrator(mesh, tmp_path_factory) -> Iterator[ServiceProcess]:
    """A realtime service (the local cascade) and an orchestrator over it and ``mesh``."""
    folder = tmp_path_factory.mktemp("realtime")
    REALTIME_METRICS["port"] = free_port()
    realtime = ServiceProcess("realtime", args=["--metrics-port", str(REALTIME_METRICS["port"]),
                                                "--max-response-tokens", "60", "--max-sessions", "2"],
                              log_path=folder / "realtime.log").start()
    orchestrator = None
    try:
        realtime.wait_serving()
        path = write_mesh(folder, mesh.config(realtime={"*": [realtime.address]}))
        orchestrator = ServiceProcess("orchestrator", args=["--metrics-port", "-1", "--mesh", str(path),
                                                            "--max-tokens", "60", "--log-level", "DEBUG"],
                                      log_path=folder / "orchestrator.log").start()
        yield orchestrator.wait_serving()
    finally:
        if orchestrator is not None:
            orchestrator.stop()
        realtime.stop()


def realtime_config(**fields) -> agent_pb2.SessionConfig:
    return agent_pb2.SessionConfig(instructions=INSTRUCTIONS, realtime=choice(REALTIME),
                                   input_sample_rate_hz=RATE, output_sample_rate_hz=RATE, **fields)


def usage_of(s: AgentClient, turn: int, service: str) -> list:
    return [u.usage for u in s.of("usage", turn) if u.service == service]


async def test_switching_to_realtime_and_back_keeps_the_history(realtime_orchestrator):
    async with AgentClient(realtime_orchestrator.address, session_config(instructions=INSTRUCTIONS)) as s:
        s.start_audio()
        s.send(say=agent_pb2.Say(text="Your dog is called Rex.", add_to_history=True))  # turn 1, spoken by the pipeline
        await s.turn_done(1)

        # Onto the realtime model: the question is spoken, the cascade hears it, answers from the history.
        s.send(update_models=agent_pb2.UpdateModels(realtime=choice(REALTIME)))
        s.say(speak("What is my dog called?") + silence(0.3))
        done = await s.turn_done(2, timeout=120)
        assert "rex" in done.text.lower(), done.text
        assert s.agent_text(2).strip() == done.text
        heard = [t.text for t in s.of("user_transcript", 2) if t.final]
        assert heard and wer([("What is my dog called?", heard[-1])]) <= 0.2, heard
        assert wer([(done.text, transcribe(s.agent_audio(2)))]) <= 0.3
        metrics = s.metrics(2)
        assert metrics.llm_model == REALTIME and metrics.voice_to_voice_ms > 0
        assert usage_of(s, 2, "realtime") and usage_of(s, 2, "realtime")[0].output_tokens > 0

        # Back to the pipeline: a new LLM stream gets the whole history, the realtime turn included.
        s.send(update_models=agent_pb2.UpdateModels(stt=choice(STT), llm=choice(LLM), tts=choice(TTS)))
        s.send(text="What is my dog called?")
        done = await s.turn_done(3, timeout=120)
        assert "rex" in done.text.lower(), done.text
        assert s.metrics(3).llm_model == LLM
        assert not s.of("error"), s.of("error")


async def test_a_session_that_starts_on_a_realtime_model(realtime_orchestrator):
    async with AgentClient(realtime_orchestrator.address, realtime_config()) as s:
        s.start_audio()
        s.say(speak("What is the capital of France?") + silence(0.3))
        done = await s.turn_done(1, timeout=120)
        assert "paris" in done.text.lower(), done.text
        states = [e.state for e in s.of("state", 1)]
        assert agent_pb2.AGENT_STATE_THINKING in states and agent_pb2.AGENT_STATE_SPEAKING in states

        # Leaving realtime needs all three pipeline models, as the session has none yet: an error, no switch.
        s.send(update_models=agent_pb2.UpdateModels(llm=choice(LLM)))
        error = (await s.wait_for(lambda e: e.kind == "error")).event
        assert error.code == "INVALID_ARGUMENT" and "stt, tts" in error.message
        # Say needs the pipeline's voice.
        s.send(say=agent_pb2.Say(text="Hello."))
        error = (await s.wait_for(lambda e: e.kind == "error" and "Say" in e.event.message)).event
        assert error.code == "INVALID_ARGUMENT"
        # Still on the realtime model, by text now. Without a history that names the dog, its name is not known
        # (the control of the switching test).
        s.send(text="What is my dog called?")
        done = await s.turn_done(2, timeout=120)
        assert done.text and "rex" not in done.text.lower(), done.text
        # A half-close ends the session once the realtime stream has ended.
        s.close()
        await s.ended()
        assert [e.code for e in s.of("error")] == ["INVALID_ARGUMENT", "INVALID_ARGUMENT"], s.of("error")


async def test_speech_during_a_realtime_answer_stops_it_and_keeps_what_was_heard(realtime_orchestrator):
    async with AgentClient(realtime_orchestrator.address, realtime_config()) as s:
        s.start_audio()
        s.send(text="Tell me a long story about a dog who lives on a farm.")
        await s.wait_for(lambda e: e.kind == "agent_audio" and len(s.agent_audio(1)) >= RATE * 2, timeout=120)
        s.say(speak("Stop, please tell me about cats instead.") + silence(0.3))
        done = await s.turn_done(1, timeout=120)
        assert done.interrupted
        full = s.agent_text(1)
        assert done.text and len(done.text) < len(full.strip()), (done.text, full)
        assert full.startswith(done.text[: max(1, len(done.text) - 1)])
        # The next answer is to the interruption.
        await s.turn_done(2, timeout=120)
        assert not [e for e in s.of("error") if e.code != "INVALID_ARGUMENT"], s.of("error")


async def test_a_vanished_client_leaves_no_realtime_stream_open(realtime_orchestrator):
    async with AgentClient(realtime_orchestrator.address, realtime_config()) as s:
        s.send(text="Tell me a long story about a dog who lives on a farm.")
        await s.wait_for(lambda e: e.kind == "agent_audio", timeout=120)
        assert streams_open(REALTIME_METRICS["port"], "Converse") >= 1
    # The client is gone mid-answer (its call cancelled, no half-close): the Converse stream must close.
    deadline = time.monotonic() + 15
    while streams_open(REALTIME_METRICS["port"], "Converse") and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert streams_open(REALTIME_METRICS["port"], "Converse") == 0


async def test_describe_lists_the_realtime_models(realtime_orchestrator):
    channel = grpc.aio.insecure_channel(realtime_orchestrator.address)
    try:
        answer = await agent_pb2_grpc.AgentServiceStub(channel).Describe(agent_pb2.AgentServiceDescribeRequest(),
                                                                         timeout=30)
    finally:
        await channel.close()
    descriptors = {m.descriptor for m in answer.description.models}
    assert any(d.startswith(REALTIME) for d in descriptors) and LLM in descriptors, descriptors


async def test_bad_realtime_choices_get_clear_errors(realtime_orchestrator):
    bad = realtime_config()
    bad.realtime.candidates[0].descriptor = "nobody/unknown"
    async with AgentClient(realtime_orchestrator.address, bad) as s:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await s.wait_for(lambda e: False, timeout=30)
    assert failed.value.code() == grpc.StatusCode.NOT_FOUND
    assert "nobody" in failed.value.details()

    async with AgentClient(realtime_orchestrator.address, session_config(instructions=INSTRUCTIONS)) as s:
        s.send(update_models=agent_pb2.UpdateModels(realtime=choice(REALTIME), llm=choice(LLM)))
        error = (await s.wait_for(lambda e: e.kind == "error")).event
        assert error.code == "INVALID_ARGUMENT" and "not both" in error.message
        s.send(text="What is the capital of France?")  # still on the pipeline
        done = await s.turn_done(1)
        assert "paris" in done.text.lower()
        assert s.metrics(1).llm_model == LLM


async def test_a_dead_realtime_service_hands_the_session_to_the_next_one(mesh, service_process, tmp_path):
    ports = [free_port(), free_port()]
    services = [service_process("realtime", args=["--metrics-port", str(port), "--max-response-tokens", "40"])
                for port in ports]
    path = write_mesh(tmp_path, mesh.config(realtime={"*": [s.address for s in services]}))
    orchestrator = service_process("orchestrator", args=["--mesh", str(path), "--max-tokens", "40"])
    async with AgentClient(orchestrator.address, realtime_config()) as s:
        s.send(text="What is the capital of France?")
        await s.turn_done(1, timeout=120)
        serving = [i for i, port in enumerate(ports) if streams_open(port, "Converse")]
        assert len(serving) == 1, serving
        services[serving[0]].proc.kill()
        error = (await s.wait_for(lambda e: e.kind == "error", timeout=60)).event
        assert error.code == "UNAVAILABLE", error
        # The other service took the session over, with the history: it answers the next question.
        s.send(text="What is the capital of Italy?")
        done = await s.turn_done(2, timeout=120)
        assert "rome" in done.text.lower(), done.text
        assert streams_open(ports[1 - serving[0]], "Converse") == 1
        # With both dead the session cannot hear any more: it ends with UNAVAILABLE.
        services[1 - serving[0]].proc.kill()
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await s.ended(60)
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE, ended.value
    assert "realtime" in ended.value.details()


async def test_a_text_session_goes_on_after_the_realtime_service_closed_its_idle_stream(mesh, service_process,
                                                                                           tmp_path):
    # The service closes a stream with no message either way for --idle-timeout-s (IDLE_TIMEOUT): a session that
    # only writes now and then is no failure. The stream opens again at once, with the history. (The idle time
    # runs from the service's last message, so it is set longer than a short reply takes to play out.)
    port = free_port()
    realtime = service_process("realtime", args=["--metrics-port", str(port), "--max-response-tokens", "16",
                                                 "--idle-timeout-s", "6"])
    path = write_mesh(tmp_path, mesh.config(realtime={"*": [realtime.address]}))
    orchestrator = service_process("orchestrator", args=["--mesh", str(path), "--max-tokens", "40"])
    async with AgentClient(orchestrator.address, realtime_config()) as s:
        s.send(text="What is the capital of France?")
        await s.turn_done(1, timeout=120)
        def idle_closes() -> float:
            return metric(port, "voicemesh_rpcs_total", method="Converse", code="DEADLINE_EXCEEDED")

        deadline = time.monotonic() + 30
        while not idle_closes() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert idle_closes() >= 1  # the service closed it as idle
        s.send(text="What is the capital of Italy?")
        done = await s.turn_done(2, timeout=120)
        assert "rome" in done.text.lower(), done.text
        assert streams_open(port, "Converse") == 1
        # The stream opened again with the question and answer of turn 1.
        assert "(history of 2 messages replayed)" in orchestrator.log_path.read_text()
        assert not s.of("error"), s.of("error")
        s.close()
        await s.ended()


async def test_a_realtime_tool_call_goes_to_the_client_and_the_answer_continues_the_turn(realtime_orchestrator):
    # The remote realtime backend against a local server that speaks the OpenAI Realtime protocol: it calls the
    # session's first tool when the last item is the user's, and answers with its fixed reply after the result.
    from tests.realtime.openai_server import REPLY, FakeRealtimeServer

    fake = FakeRealtimeServer(pace_s=0.01).start()
    try:
        config = realtime_config(tools=[llm_pb2.Tool(
            name="get_weather", description="Weather of a city",
            parameters_json='{"type": "object", "properties": {"city": {"type": "string"}}}')])
        config.realtime.candidates[0].descriptor = "openai/gpt-realtime"
        config.realtime.candidates[0].backend.CopyFrom(common_pb2.BackendOptions(base_url=fake.url, api_key="test-key",
                                                                                 timeout_s=10))
        async with AgentClient(realtime_orchestrator.address, config) as s:
            s.send(text="What is the weather in Paris?")
            call = (await s.wait_for(lambda e: e.kind == "tool_call", timeout=60)).event
            assert call.name == "get_weather" and json.loads(call.arguments_json) == {"city": "Paris"}
            s.send(tool_result=agent_pb2.ToolResult(call_id=call.id, output="Sunny, 21 C"))
            done = await s.turn_done(1, timeout=60)
            assert done.text == REPLY and not done.interrupted
            assert not s.of("turn_done", 2) and len(s.of("metrics")) == 1  # one turn: the call and the answer
            assert s.agent_audio(1) and not s.of("error")
    finally:
        fake.stop()
    output = [e["item"] for e in fake.seen.events if e["type"] == "conversation.item.create"][-1]
    assert output == {"type": "function_call_output", "call_id": call.id, "output": "Sunny, 21 C"}
