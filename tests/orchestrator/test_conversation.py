"""Spoken conversations through the orchestrator over real STT, LLM and TTS processes."""

from __future__ import annotations

import asyncio

import pytest

from tests.orchestrator.client import RATE, AgentClient, session_config
from tests.orchestrator.conftest import transcribe
from tests.speech import speak, wer
from voicemesh.v1 import agent_pb2

pytestmark = pytest.mark.slow

QUESTIONS = ["What is the capital of France?", "What is the capital of Germany?"]


async def test_two_spoken_turns(orchestrator):
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
        await asyncio.wait_for(s._reader, 30)  # the session ends after a half-close
        assert any(u.service == "stt" and u.usage.audio_seconds_in > 3 for u in s.of("usage"))
