"""Mid-session model switches, fallback to a second LLM address, and clean-up after a vanished client."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.orchestrator.client import LLM, RATE, STT, TTS, AgentClient, choice, session_config
from tests.orchestrator.conftest import write_mesh
from tests.speech import speak, wer
from voicemesh.process import free_port
from voicemesh.v1 import agent_pb2

pytestmark = pytest.mark.slow


def audio_seconds(s: AgentClient, turn: int) -> float:
    return len(s.agent_audio(turn)) / 2 / RATE


def llm_input_tokens(s: AgentClient, turn: int) -> int:
    return sum(u.usage.input_tokens for u in s.of("usage", turn) if u.service == "llm")


async def test_update_models_takes_effect_next_turn_with_history(orchestrator):
    text = "Paris is the capital of France."
    async with AgentClient(orchestrator.address, session_config()) as s:
        s.send(say=agent_pb2.Say(text=text, add_to_history=True))
        await s.turn_done(1)
        s.send(text="What is the capital of France?")
        await s.turn_done(2)
        # A faster voice, and a new chat stream (the same model anew) that must get the whole history.
        s.send(update_models=agent_pb2.UpdateModels(llm=choice(LLM), tts=choice(TTS, speed=2.0)))
        s.send(say=agent_pb2.Say(text=text, add_to_history=True))
        await s.turn_done(3)
        s.send(text="And what is the capital of France again?")
        await s.turn_done(4)
        assert not s.of("error"), s.of("error")
        # Turn 3 said the same words as turn 1 at double speed.
        assert audio_seconds(s, 3) < 0.7 * audio_seconds(s, 1)
        # Turn 4 went to a new chat stream: its prompt holds the four earlier messages and more.
        assert llm_input_tokens(s, 4) > llm_input_tokens(s, 2) + 10
        assert s.metrics(4).llm_model == LLM and s.metrics(4).tts_model == TTS


async def test_first_llm_address_dead_falls_back_and_names_the_model(mesh, service_process, tmp_path):
    dead = f"127.0.0.1:{free_port()}"
    path = write_mesh(tmp_path, mesh.config(llm={"openai": [dead], "llama.cpp": [mesh.llm.address]}))
    orchestrator = service_process("orchestrator", args=["--mesh", str(path), "--max-tokens", "40"])
    config = session_config(llm=("openai/gpt-4o-mini", LLM))
    async with AgentClient(orchestrator.address, config) as s:
        s.send(text="What is the capital of France?")
        done = await s.turn_done(1)
        assert done.text and not done.interrupted
        assert audio_seconds(s, 1) > 0.5
        metrics = s.metrics(1)
        assert metrics.llm_model == LLM
        assert len(metrics.fallbacks) == 1
        assert metrics.fallbacks[0].startswith(f"openai/gpt-4o-mini@{dead}: UNAVAILABLE"), metrics.fallbacks
        # The next turn goes straight to the model that answered.
        s.send(text="Thank you.")
        await s.turn_done(2)
        assert s.metrics(2).llm_model == LLM and not s.metrics(2).fallbacks


async def test_stalled_voice_falls_back_within_the_timeout(mesh, service_process, tmp_path):
    """A 'service' that accepts connections but never answers counts as a stall, not only an error."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    stalled = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        path = write_mesh(tmp_path, mesh.config(tts={"openai": [stalled], "piper": [mesh.tts.address]}))
        orchestrator = service_process("orchestrator", args=["--mesh", str(path), "--max-tokens", "40"])
        config = session_config(tts=("openai/tts-1:alloy", TTS), first_result_timeout_ms=1500)
        async with AgentClient(orchestrator.address, config) as s:
            s.send(say=agent_pb2.Say(text="Hello there, how are you?"))
            done = await s.turn_done(1)
            assert done.text == "Hello there, how are you?"
            metrics = s.metrics(1)
            assert metrics.tts_model == TTS
            assert metrics.fallbacks and metrics.fallbacks[0].startswith(f"openai/tts-1:alloy@{stalled}")
            assert audio_seconds(s, 1) > 0.5
    finally:
        server.close()


async def test_a_vanished_client_leaves_nothing_running(mesh, orchestrator):
    config = session_config(instructions="You are a storyteller. Always answer with a long story.")
    async with AgentClient(orchestrator.address, config) as s:
        s.send(text="Tell me a long story about a dog and a cat.")
        await s.wait_for(lambda e: e.kind == "agent_audio", timeout=60)
        assert mesh.streams_open("llm", "Chat") >= 1
        assert mesh.streams_open("tts", "Synthesize") >= 1
        assert mesh.streams_open("stt", "Recognize") >= 1
    # The client is gone mid-reply (its call cancelled, no half-close): every stream must close.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        left = {m: mesh.streams_open(svc, m) for svc, m in (("llm", "Chat"), ("tts", "Synthesize"),
                                                           ("stt", "Recognize"))}
        if not any(left.values()):
            break
        await asyncio.sleep(0.2)
    assert not any(left.values()), left


async def test_a_stalled_stt_is_replaced_and_the_turn_still_heard(mesh, service_process, tmp_path):
    """The first STT address takes connections and never answers: the next one gets the user's audio again."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    stalled = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        path = write_mesh(tmp_path, mesh.config(stt={"openai": [stalled], "faster-whisper": [mesh.stt.address]}))
        orchestrator = service_process("orchestrator", args=["--mesh", str(path), "--max-tokens", "40"])
        config = session_config(stt=("openai/whisper-1", STT), first_result_timeout_ms=1000)
        async with AgentClient(orchestrator.address, config) as s:
            s.start_audio()
            s.say(speak("What is the capital of France?", RATE))
            await s.turn_done(1)
            final = [t for t in s.of("user_transcript", 1) if t.final]
            assert final and wer([("What is the capital of France?", final[0].text)]) <= 0.2
            metrics = s.metrics(1)
            assert metrics.stt_model == STT
            # Whichever comes first: the session's stall check (voice heard, no speech event in time) or
            # gRPC giving up on a connection that never sends its SETTINGS frame.
            assert metrics.fallbacks and metrics.fallbacks[0].startswith(f"openai/whisper-1@{stalled}: ")
            assert metrics.fallbacks[0].split(": ")[1] in ("DEADLINE_EXCEEDED", "UNAVAILABLE"), metrics.fallbacks
    finally:
        server.close()
