"""A spoken turn through the orchestrator with a native streaming TTS provider (Cartesia, on its loopback
double) and local STT and LLM: the LiveKit Inference example's TTS, as a descriptor and as a plugin instance."""

from __future__ import annotations

import asyncio

import pytest

from tests.orchestrator.client import LLM, RATE, STT, TTS
from tests.orchestrator.conftest import transcribe
from tests.providers.cartesia_double import CartesiaDouble
from tests.speech import silence, speak, wer, words
from voicemesh.client import AgentSession, EventType, cartesia

pytestmark = pytest.mark.slow

KEY = "sk-cartesia-session"
VOICE = "9626c31c-bec5-4cca-baa8-f8ba9e84c8bc"


@pytest.fixture
def cartesia_double():
    double = CartesiaDouble(api_key=KEY).start()
    yield double
    double.stop()


async def spoken_turn(session: AgentSession, question: str) -> dict:
    """Speak ``question`` in real time; every event up to the agent listening again after its turn."""
    collector = asyncio.create_task(collect_turn(session))
    pcm = speak(question, RATE) + silence(2.0, RATE)
    for offset in range(0, len(pcm), 2 * RATE // 50):
        await session.send_audio(pcm[offset:offset + 2 * RATE // 50])
        await asyncio.sleep(0.02)
    return await collector


async def collect_turn(session: AgentSession) -> dict:
    """Every event up to the agent listening again after its turn (and a moment for metrics and usage)."""
    seen: dict = {"heard": "", "text": "", "audio": bytearray(), "metrics": [], "usage": [], "errors": []}

    async def collect() -> None:
        done = None
        async for event in session.events():
            if event.type is EventType.USER_TRANSCRIPT and event.final:
                seen["heard"] += event.text
            elif event.type is EventType.AGENT_TEXT:
                seen["text"] += event.delta
            elif event.type is EventType.AGENT_AUDIO:
                seen["audio"] += event.audio
            elif event.type is EventType.METRICS:
                seen["metrics"].append(event)
            elif event.type is EventType.USAGE:
                seen["usage"].append(event)
            elif event.type is EventType.ERROR:
                seen["errors"].append(event)
            elif event.type is EventType.TURN_DONE:
                done = event
            elif event.type is EventType.AGENT_STATE and done is not None and event.turn_id == done.turn_id \
                    and event.state.name == "LISTENING":
                return

    await asyncio.wait_for(collect(), 120)
    await asyncio.sleep(0.5)  # metrics and usage may follow the turn's end
    return seen


@pytest.mark.parametrize("form", ["descriptor", "plugin"])
async def test_a_spoken_turn_with_cartesia_tts_and_local_stt_and_llm(mesh, service_process, cartesia_double,
                                                                      tmp_path, form):
    tts = service_process("tts", env={"VOICEMESH_CARTESIA_BASE_URL": cartesia_double.base_url,
                                      "CARTESIA_API_KEY": KEY})
    path = tmp_path / "mesh.json"
    mesh.config(tts={"*": [tts.address]}).write(path)
    orchestrator = service_process("orchestrator", args=["--mesh", str(path), "--max-tokens", "40"])
    voice = f"cartesia/sonic-2:{VOICE}" if form == "descriptor" else cartesia.TTS(model="sonic-2", voice=VOICE)
    async with AgentSession(address=orchestrator.address, stt=STT, llm=LLM, tts=voice,
                            instructions="Answer in one short sentence.", input_sample_rate=RATE,
                            output_sample_rate=RATE) as session:
        turn = await spoken_turn(session, "What is the capital of France?")
    assert not turn["errors"], turn["errors"]
    assert "france" in turn["heard"].lower(), turn["heard"]
    assert turn["text"].strip() and len(turn["audio"]) > RATE, "no spoken reply"
    pair = (turn["text"], transcribe(bytes(turn["audio"])))
    assert wer([pair]) <= 0.4, pair  # one short sentence: whisper tiny hears "France is" as "Francis"
    [metrics] = turn["metrics"]
    assert metrics.tts_model == f"cartesia/sonic-2:{VOICE}" and metrics.tts_ttfb_ms > 0
    # Every TTS stream of the turn reports its usage: a reply generated ahead on an interim and dropped reports
    # what it used (nothing, when no text had reached its voice yet), the spoken one its characters.
    tts_usage = [u.usage for u in turn["usage"] if u.service == "tts"]
    assert sum(u.characters for u in tts_usage) > 0, tts_usage
    # The spoken reply went to Cartesia as one context of continuations (a reply generated ahead on an interim and
    # dropped had its own context, which must hold none of the spoken text).
    spoken = cartesia_double.requests[-1]["context_id"]
    sent = "".join(r.get("transcript", "") for r in cartesia_double.requests if r["context_id"] == spoken)
    assert words(sent) == words(turn["text"]), (sent, turn["text"])


@pytest.mark.parametrize("fault", ["dead", "stall"])
async def test_a_cartesia_that_dies_or_stalls_falls_back_to_the_next_voice(mesh, service_process, orchestrator, fault):
    double = CartesiaDouble(api_key=KEY, fault="stall").start()
    base_url = double.base_url
    if fault == "dead":
        double.stop()  # nothing listens there any more
    try:
        voices = [cartesia.TTS(model="sonic-2", voice=VOICE, base_url=base_url, api_key=KEY), TTS]
        async with AgentSession(address=orchestrator.address, stt=STT, llm=LLM, tts=voices,
                                instructions="Answer in one short sentence.", input_sample_rate=RATE,
                                output_sample_rate=RATE, first_result_timeout_ms=3000) as session:
            collector = asyncio.create_task(collect_turn(session))
            await session.send_text("What is the capital of France?")
            turn = await collector
    finally:
        if fault == "stall":
            assert double.requests, "the stalled double never got the reply's text"
            double.stop()
    assert turn["text"].strip() and len(turn["audio"]) > RATE, "no spoken reply after the fallback"
    [metrics] = turn["metrics"]
    assert metrics.tts_model == TTS, metrics
    assert any(f.startswith("cartesia/sonic-2") for f in metrics.fallbacks), metrics.fallbacks
