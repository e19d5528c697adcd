"""The SDK against a real orchestrator and real model services (started by ``voicemesh up``)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from tests.speech import silence, word_errors
from voicemesh.audio import chunks, read_wav
from voicemesh.client import (
    AgentAudio,
    AgentSession,
    AgentSessionError,
    AgentState,
    AgentStateChanged,
    AgentText,
    EventType,
    Model,
    SessionStarted,
    TurnDone,
    TurnMetrics,
    UserTranscript,
)
from voicemesh.client.session import DEFAULT_LLM, DEFAULT_STT, DEFAULT_TTS
from voicemesh.samples import QUESTION_TEXT, question_path

pytestmark = pytest.mark.slow
INSTRUCTIONS = "You are a helpful assistant. Answer the question in English with one short, factual sentence."
STALL_MS = 30000  # generous: the test machine is shared and busy


async def collect_turn(session: AgentSession, *, send_silence: bool, timeout: float = 90.0,
                       speech: bytes = b"") -> list:
    """Events until a TurnDone and a TurnMetrics arrived: ``speech`` (16 kHz) sent first in real time, then
    (with ``send_silence``) 20 ms of silence every 20 ms meanwhile."""
    events: list = []
    got: set[EventType] = set()

    async def follow() -> None:
        async for event in session:
            events.append(event)
            got.add(event.type)
            if {EventType.TURN_DONE, EventType.METRICS} <= got:
                return

    follower = asyncio.create_task(follow())
    try:
        async with asyncio.timeout(timeout):
            for chunk in chunks(speech, rate=16000, ms=20):
                await session.send_audio(chunk)
                await asyncio.sleep(0.02)
            while not follower.done():
                if send_silence:
                    await session.send_audio(silence(0.02))
                await asyncio.sleep(0.02)
            follower.result()
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    return events


async def test_a_spoken_turn_arrives_as_typed_events_in_order(mesh_up):
    pcm, rate = read_wav(question_path())
    async with AgentSession(address=mesh_up.orchestrator, instructions=INSTRUCTIONS, first_result_timeout_ms=STALL_MS,
                            input_sample_rate=rate,
                            output_sample_rate=16000) as session:
        assert session.session_id
        for chunk in chunks(pcm, rate=rate, ms=20):
            await session.send_audio(chunk)
            await asyncio.sleep(0.02)
        events = await collect_turn(session, send_silence=True)

    assert not any(isinstance(e, SessionStarted) for e in events)  # consumed by start()
    finals = [e for e in events if isinstance(e, UserTranscript) and e.final]
    assert finals
    errors, total = word_errors(QUESTION_TEXT, " ".join(e.text for e in finals))
    assert errors / total <= 0.2, [e.text for e in finals]
    turn_id = finals[-1].turn_id
    assert turn_id >= 1

    kinds = [e.type for e in events]
    last_final = max(i for i, e in enumerate(events) if isinstance(e, UserTranscript) and e.final)
    reply_events = events[last_final:]
    text = "".join(e.delta for e in reply_events if isinstance(e, AgentText))
    audio = [e for e in reply_events if isinstance(e, AgentAudio)]
    done = next(e for e in events if isinstance(e, TurnDone))
    metrics = next(e for e in events if isinstance(e, TurnMetrics))
    states = [e.state for e in events if isinstance(e, AgentStateChanged)]

    assert text.strip() and done.text.strip() == text.strip() and not done.interrupted
    assert audio and {a.sample_rate for a in audio} == {16000}
    assert sum(a.duration_s for a in audio) > 0.3
    assert {a.turn_id for a in audio} == {done.turn_id} == {metrics.turn_id}
    assert AgentState.SPEAKING in states
    assert states.index(AgentState.SPEAKING) > (states.index(AgentState.THINKING) if AgentState.THINKING in states
                                                else -1)
    assert kinds.index(EventType.AGENT_AUDIO) < kinds.index(EventType.TURN_DONE)
    assert metrics.voice_to_voice_ms > 0 and metrics.llm_ttft_ms > 0
    assert (metrics.stt_model, metrics.llm_model, metrics.tts_model) == (DEFAULT_STT, DEFAULT_LLM, DEFAULT_TTS)


async def test_text_turn_then_say(mesh_up):
    async with AgentSession(address=mesh_up.orchestrator, instructions=INSTRUCTIONS,
                            first_result_timeout_ms=STALL_MS) as session:
        await session.send_text("What is the capital of France?")
        events = await collect_turn(session, send_silence=False)
        reply = "".join(e.delta for e in events if isinstance(e, AgentText))
        assert reply.strip()
        assert any(isinstance(e, AgentAudio) for e in events)

        await session.say("Goodbye for now.")
        events = await collect_turn(session, send_silence=False)
        said = next(e for e in events if isinstance(e, TurnDone))
        assert "Goodbye for now" in said.text
        assert any(isinstance(e, AgentAudio) and e.turn_id == said.turn_id for e in events)


async def test_a_bad_config_raises_with_the_grpc_code_and_message(mesh_up):
    session = AgentSession(address=mesh_up.orchestrator, input_sample_rate=1000)
    with pytest.raises(AgentSessionError) as info:
        await session.start()
    assert info.value.code == "INVALID_ARGUMENT"
    assert "sample" in info.value.message.lower()
    await session.aclose()


async def test_end_input_ends_the_event_stream(mesh_up):
    async with AgentSession(address=mesh_up.orchestrator, instructions=INSTRUCTIONS,
                            first_result_timeout_ms=STALL_MS) as session:
        await session.end_input()
        async with asyncio.timeout(30):
            remaining = [e async for e in session]  # must finish, not hang
        assert all(e.type is not EventType.ERROR for e in remaining)
        with pytest.raises(RuntimeError, match="end_input"):
            await session.send_text("too late")


async def test_the_api_key_travels_as_bearer_metadata(mesh_up, service_process, tmp_path, monkeypatch):
    """An orchestrator with a ledger refuses a session without a key and takes one from the env or argument."""
    url = f"sqlite:///{tmp_path}/ledger.db"
    created = subprocess.run([sys.executable, "-m", "voicemesh.cli", "keys", "create", "sdk-test", "--ledger", url],
                             capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    orchestrator = service_process("orchestrator",
                                   args=["--ledger", url, "--mesh", str(mesh_up.state_dir / "mesh.json")])

    monkeypatch.delenv("VOICEMESH_API_KEY", raising=False)
    for wrong in (None, "vm_nope_nope"):
        session = AgentSession(address=orchestrator.address, api_key=wrong)
        with pytest.raises(AgentSessionError) as info:
            await session.start()
        assert info.value.code == "UNAUTHENTICATED", info.value
        await session.aclose()

    async with AgentSession(address=orchestrator.address, api_key=key) as session:
        assert session.session_id
    monkeypatch.setenv("VOICEMESH_API_KEY", key)
    async with AgentSession(address=orchestrator.address) as session:
        assert session.session_id


async def test_interrupt_and_update_models_reach_the_orchestrator(mesh_up):
    async with AgentSession(address=mesh_up.orchestrator, instructions=INSTRUCTIONS,
                            first_result_timeout_ms=STALL_MS) as session:
        await session.say("Once upon a time there was a dog who lived by the sea. Every morning he ran along "
                          "the beach, barked at the waves, and waited for the fishing boats to come home.")
        await session.wait_for(EventType.AGENT_AUDIO, timeout=60)
        await session.interrupt()
        done = await session.wait_for(EventType.TURN_DONE, timeout=60)
        assert done.interrupted
        assert "fishing boats" not in done.text  # the history keeps only what was played

        await session.update_models(tts=Model(DEFAULT_TTS, speed=1.5))
        await session.send_text("What is the capital of France?")
        events = await collect_turn(session, send_silence=False)
        metrics = next(e for e in events if isinstance(e, TurnMetrics))
        assert metrics.tts_model == DEFAULT_TTS
        assert any(isinstance(e, AgentAudio) for e in events)
