"""Pure conversion of the SDK: server messages to typed events, model choices to config messages."""

from __future__ import annotations

import json

import pytest

from voicemesh.client import (
    AgentSession,
    AgentState,
    EventType,
    Interruption,
    Model,
    Tool,
    TurnDetection,
    openai,
)
from voicemesh.client.events import from_proto
from voicemesh.client.models import to_choice
from voicemesh.errors import InvalidInput
from voicemesh.v1 import agent_pb2, common_pb2, llm_pb2


def test_every_server_event_converts_to_its_typed_event():
    messages = [
        agent_pb2.SessionResponse(started=agent_pb2.SessionStarted(session_id="s-1")),
        agent_pb2.SessionResponse(user_transcript=agent_pb2.UserTranscript(turn_id=1, text="what is", final=False)),
        agent_pb2.SessionResponse(user_transcript=agent_pb2.UserTranscript(turn_id=1, text="What is?", final=True)),
        agent_pb2.SessionResponse(agent_text=agent_pb2.AgentText(turn_id=1, delta="Paris")),
        agent_pb2.SessionResponse(agent_audio=agent_pb2.AgentAudio(turn_id=1, audio=b"\x01\x00" * 240,
                                                                   sample_rate_hz=24000)),
        agent_pb2.SessionResponse(state=agent_pb2.AgentStateChanged(state=agent_pb2.AGENT_STATE_SPEAKING, turn_id=1)),
        agent_pb2.SessionResponse(tool_call=llm_pb2.ToolCall(id="c1", name="weather", arguments_json='{"city":"x"}')),
        agent_pb2.SessionResponse(metrics=agent_pb2.TurnMetrics(
            turn_id=1, end_of_utterance_delay_ms=300, stt_final_latency_ms=120.5, llm_ttft_ms=80, tts_ttfb_ms=140,
            voice_to_voice_ms=640, stt_model="faster-whisper/tiny.en:en", llm_model="llama.cpp/m",
            tts_model="piper/v", fallbacks=["openai/x: UNAVAILABLE"])),
        agent_pb2.SessionResponse(usage=agent_pb2.UsageReport(turn_id=1, service="llm", usage=common_pb2.Usage(
            model="llama.cpp/m", input_tokens=40, output_tokens=7, cached_tokens=30))),
        agent_pb2.SessionResponse(error=agent_pb2.SessionError(
            turn_id=2, code="NOT_FOUND", message="no such voice",
            detail=common_pb2.ErrorDetail(reason="UNKNOWN_MODEL", model="piper/x", known=["piper/a", "piper/b"]))),
        agent_pb2.SessionResponse(turn_done=agent_pb2.AgentTurnDone(turn_id=1, text="Paris.", interrupted=True)),
    ]
    events = [from_proto(m) for m in messages]
    assert [e.type for e in events] == [
        EventType.SESSION_STARTED, EventType.USER_TRANSCRIPT, EventType.USER_TRANSCRIPT, EventType.AGENT_TEXT,
        EventType.AGENT_AUDIO, EventType.AGENT_STATE, EventType.TOOL_CALL, EventType.METRICS, EventType.USAGE,
        EventType.ERROR, EventType.TURN_DONE,
    ]
    started, interim, final, text, audio, state, call, metrics, usage, error, done = events
    assert started.session_id == "s-1"
    assert (interim.text, interim.final, final.text, final.final) == ("what is", False, "What is?", True)
    assert (text.turn_id, text.delta) == (1, "Paris")
    assert audio.sample_rate == 24000 and audio.audio == b"\x01\x00" * 240
    assert audio.duration_s == pytest.approx(0.01)
    assert state.state is AgentState.SPEAKING
    assert (call.call_id, call.name, json.loads(call.arguments_json)) == ("c1", "weather", {"city": "x"})
    assert metrics.stt_final_latency_ms == 120.5 and metrics.voice_to_voice_ms == 640
    assert metrics.llm_model == "llama.cpp/m" and metrics.fallbacks == ("openai/x: UNAVAILABLE",)
    assert (usage.service, usage.usage.input_tokens, usage.usage.cached_tokens) == ("llm", 40, 30)
    assert (error.code, error.reason, error.model, error.known) == ("NOT_FOUND", "UNKNOWN_MODEL", "piper/x",
                                                                    ("piper/a", "piper/b"))
    assert (done.text, done.interrupted) == ("Paris.", True)


def test_the_draining_event_says_the_time_left():
    event = from_proto(agent_pb2.SessionResponse(draining=agent_pb2.SessionDraining(seconds_left=20.0)))
    assert event.type is EventType.DRAINING and event.seconds_left == 20.0


def test_empty_message_and_unknown_state_do_not_break_the_client():
    assert from_proto(agent_pb2.SessionResponse()) is None
    unknown = agent_pb2.SessionResponse(state=agent_pb2.AgentStateChanged(state=42, turn_id=3))
    assert from_proto(unknown).state is AgentState.UNSPECIFIED


def test_model_choices_become_ordered_fallback_lists_with_backend_options():
    choice = to_choice([openai.LLM(model="gpt-4.1-mini", base_url="http://127.0.0.1:8080/v1", api_key="sk-1",
                                   timeout_s=5), "llama.cpp/smollm2-135m-instruct"])
    first, second = choice.candidates
    assert first.descriptor == "openai/gpt-4.1-mini"
    assert (first.backend.base_url, first.backend.api_key, first.backend.timeout_s) == (
        "http://127.0.0.1:8080/v1", "sk-1", 5)
    assert second.descriptor == "llama.cpp/smollm2-135m-instruct" and not second.HasField("backend")
    voice = to_choice(openai.TTS(model="tts-1", voice="nova", speed=1.25)).candidates[0]
    assert (voice.descriptor, voice.speed) == ("openai/tts-1:nova", 1.25)
    assert to_choice(openai.STT(language="de")).candidates[0].descriptor == "openai/whisper-1:de"
    assert to_choice(Model("piper/en_US-joe-medium", extra={"noise": 0.5})).candidates[0].backend.extra == {
        "noise": "0.5"}


@pytest.mark.parametrize("bad", ["", "no-slash", "piper/", "piper/voice:"])
def test_malformed_descriptors_fail_before_anything_is_sent(bad):
    with pytest.raises(InvalidInput):
        AgentSession(tts=bad)


def test_wrong_model_types_and_empty_fallback_lists_are_refused():
    with pytest.raises(TypeError):
        to_choice([42])
    with pytest.raises(ValueError):
        to_choice([])


def test_session_config_carries_instructions_models_turn_taking_and_tools():
    session = AgentSession(
        instructions="Be brief.", stt="faster-whisper/tiny.en:en", llm=["openai/a", "llama.cpp/b"], tts=None,
        input_sample_rate=8000, output_sample_rate=22050,
        turn_detection=TurnDetection(min_endpointing_delay_ms=200, max_endpointing_delay_ms=1500),
        interruption=Interruption(enabled=False, min_duration_ms=400),
        tools=[Tool("weather", "Weather of a city", {"type": "object"})], first_result_timeout_ms=900,
    )
    config = session.config
    assert config.instructions == "Be brief."
    assert [c.descriptor for c in config.llm.candidates] == ["openai/a", "llama.cpp/b"]
    assert not config.HasField("tts") and not config.HasField("realtime")
    assert (config.input_sample_rate_hz, config.output_sample_rate_hz) == (8000, 22050)
    assert config.turn_detection.min_endpointing_delay_ms == 200
    assert config.interruption.HasField("enabled") and config.interruption.enabled is False
    assert config.tools[0].name == "weather" and json.loads(config.tools[0].parameters_json) == {"type": "object"}
    assert config.first_result_timeout_ms == 900


def test_realtime_replaces_the_cascade():
    config = AgentSession(realtime="openai/gpt-realtime:alloy").config
    assert config.realtime.candidates[0].descriptor == "openai/gpt-realtime:alloy"
    assert not config.HasField("stt") and not config.HasField("llm") and not config.HasField("tts")


def test_api_key_goes_into_bearer_metadata_from_argument_env_or_key_file(monkeypatch, tmp_path):
    monkeypatch.setenv("VOICEMESH_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("VOICEMESH_API_KEY", "vm-env")
    assert AgentSession()._metadata == (("authorization", "Bearer vm-env"),)
    assert AgentSession(api_key="vm-arg")._metadata == (("authorization", "Bearer vm-arg"),)
    monkeypatch.delenv("VOICEMESH_API_KEY")
    assert AgentSession()._metadata == ()
    (tmp_path / "api_key").write_text("vm-file\n")  # where `voicemesh up` writes the local key
    assert AgentSession()._metadata == (("authorization", "Bearer vm-file"),)


async def test_sending_before_start_is_a_clear_error():
    with pytest.raises(RuntimeError, match="start the session first"):
        await AgentSession().send_text("hi")


async def test_an_unreachable_orchestrator_raises_with_the_grpc_code():
    from voicemesh.client import AgentSessionError
    from voicemesh.process import free_port

    session = AgentSession(address=f"127.0.0.1:{free_port()}", start_timeout_s=10)
    with pytest.raises(AgentSessionError) as info:
        await session.start()
    assert info.value.code == "UNAVAILABLE"
    await session.aclose()
