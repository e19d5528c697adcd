"""Spoken conversations through the orchestrator over real STT, LLM and TTS processes."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from tests.orchestrator.client import LLM, RATE, AgentClient, choice, session_config
from tests.orchestrator.conftest import transcribe
from tests.speech import speak, wer
from voicemesh.v1 import agent_pb2, agent_pb2_grpc

pytestmark = pytest.mark.slow

QUESTIONS = ["What is the capital of France?", "What is the capital of Germany?"]


async def test_two_spoken_turns(orchestrator, mesh):
    async with AgentClient(orchestrator.address, session_config(), metadata=(("authorization", "Bearer t"),)) as s:
        started = await s.wait_for(lambda e: e.kind == "started")
        assert started.event.session_id
        s.start_audio()
        for turn, question in enumerate(QUESTIONS, start=1):
            s.say(speak(question, RATE))
            done = await s.turn_done(turn)
            assert not done.interrupted
        finals = [t for t in s.of("user_transcript") if t.final]
        assert [t.turn_id for t in finals] == [1, 2]
        assert wer([(q, t.text) for q, t in zip(QUESTIONS, finals, strict=True)]) <= 0.2
        first, second = s.agent_text(1), s.agent_text(2)
        assert "paris" in first.lower(), first
        assert second.strip()
        pairs = []
        for turn in (1, 2):
            audio = s.agent_audio(turn)
            assert len(audio) > RATE  # more than half a second
            assert all(a.sample_rate_hz == RATE for a in s.of("agent_audio", turn))
            assert s.of("turn_done", turn)[0].text == s.agent_text(turn).strip()
            pairs.append((s.agent_text(turn), transcribe(audio)))
        assert wer(pairs) <= 0.2, pairs
        await s.wait_for(lambda e: e.kind == "state" and e.event.turn_id == 2
                         and e.event.state == agent_pb2.AGENT_STATE_LISTENING)
        states = [(e.state, e.turn_id) for e in s.of("state")]
        for turn in (1, 2):
            assert states.index((agent_pb2.AGENT_STATE_THINKING, turn)) < states.index(
                (agent_pb2.AGENT_STATE_SPEAKING, turn)) < states.index((agent_pb2.AGENT_STATE_LISTENING, turn))
        for turn in (1, 2):
            m = s.metrics(turn)
            assert (m.stt_model, m.llm_model, m.tts_model) == (
                "faster-whisper/tiny.en:en", "llama.cpp/smollm2-135m-instruct", "piper/en_US-joe-medium")
            assert not m.fallbacks
            assert 0 < m.stt_final_latency_ms <= m.end_of_utterance_delay_ms < m.voice_to_voice_ms
            assert m.llm_ttft_ms > 0 and m.tts_ttfb_ms > 0
        usage = {(u.turn_id, u.service) for u in s.of("usage")}
        assert {(1, "llm"), (1, "tts"), (2, "llm"), (2, "tts")} <= usage
        s.close()
        await s.ended(30)  # the session ends after a half-close
        assert any(u.service == "stt" and u.usage.audio_seconds_in > 3 for u in s.of("usage"))
    # The calls to the model services carried the session id (their logs are bound to it; the LLM
    # service logs nothing per stream).
    for service in (mesh.stt, mesh.tts):
        assert f"[session={started.event.session_id}]" in service.log_path.read_text(), service.service


async def _status_of(address: str, config: agent_pb2.SessionConfig) -> grpc.aio.AioRpcError:
    async with grpc.aio.insecure_channel(address) as channel:
        call = agent_pb2_grpc.AgentServiceStub(channel).Session(iter([agent_pb2.SessionRequest(config=config)]))
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            async for _ in call:
                pass
        return failure.value


async def test_bad_configs_get_clear_errors_and_other_sessions_go_on(orchestrator):
    async with AgentClient(orchestrator.address, session_config()) as s:
        await s.wait_for(lambda e: e.kind == "started")
        bad = session_config()
        bad.input_sample_rate_hz = 3
        error = await _status_of(orchestrator.address, bad)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "input_sample_rate_hz" in error.details()
        error = await _status_of(orchestrator.address, session_config(tts=("piper",)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "provider/model" in error.details()
        error = await _status_of(orchestrator.address, session_config(llm=()))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "llm" in error.details()
        s.send(text="What is the capital of France?")
        done = await s.turn_done(1)
        assert done.text and not s.of("error")


async def test_an_unknown_model_fails_the_turn_not_the_session(orchestrator):
    async with AgentClient(orchestrator.address, session_config(llm=("llama.cpp/no-such-model",))) as s:
        s.send(text="Hello?")
        await s.turn_done(1)
        errors = s.of("error", 1)
        assert errors and errors[0].code == "NOT_FOUND" and "no-such-model" in errors[0].message
        s.send(update_models=agent_pb2.UpdateModels(llm=choice(LLM)))
        s.send(text="What is the capital of France?")
        assert (await s.turn_done(2)).text


async def test_interrupt_message_stops_the_agent(orchestrator):
    config = session_config(instructions="You are a storyteller. Always answer with a long story.")
    async with AgentClient(orchestrator.address, config) as s:
        s.send(text="Tell me a long story about a dog and a cat.")
        await s.wait_for(lambda e: len(s.agent_audio(1)) >= RATE)  # half a second
        s.send(interrupt=agent_pb2.Interrupt())
        done_at = (await s.wait_for(lambda e: e.kind == "turn_done")).at
        done = s.of("turn_done", 1)[0]
        assert done.interrupted
        full = s.agent_text(1)
        assert full.startswith(done.text) and len(done.text) < len(full.strip())
        await asyncio.sleep(1.0)
        assert not [e for e in s.events if e.kind == "agent_audio" and e.at > done_at]


async def test_describe_lists_the_models_the_mesh_reaches(orchestrator):
    async with grpc.aio.insecure_channel(orchestrator.address) as channel:
        answer = await agent_pb2_grpc.AgentServiceStub(channel).Describe(agent_pb2.AgentServiceDescribeRequest())
    description = answer.description
    assert description.service == "orchestrator"
    found = {m.descriptor for m in description.models}
    assert {"llama.cpp/smollm2-135m-instruct", "piper/en_US-joe-medium"} <= found
    assert any(d.startswith("faster-whisper/tiny.en") for d in found), found
