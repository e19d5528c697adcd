"""A spoken session through the orchestrator with a native STT provider (the double) and local LLM and TTS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.client.test_agent_session import collect_turn
from tests.orchestrator.client import LLM, TTS
from tests.providers.helpers import KEY, mesh
from tests.speech import silence, speak, wer
from voicemesh.client import (
    AgentSession,
    AgentText,
    EventType,
    TurnMetrics,
    UsageReport,
    UserTranscript,
    assemblyai,
    deepgram,
)

pytestmark = pytest.mark.slow
QUESTION = "What is the capital of France?"
INSTRUCTIONS = "You are a helpful assistant. Answer the question in English with one short, factual sentence."


@pytest.fixture(scope="module")
def orchestrator(double, tmp_path_factory) -> Iterator[str]:
    """STT (its operator's AssemblyAI key and URL point at the double), local LLM and TTS, an orchestrator."""
    with mesh(tmp_path_factory.mktemp("native-stt"), {
        "stt": (["--preload", ""], {"ASSEMBLYAI_API_KEY": KEY, "VOICEMESH_ASSEMBLYAI_BASE_URL": double.base_url}),
        "llm": (["--preload", LLM, "--temperature", "0", "--llama-threads", "1"], {}),
        "tts": (["--preload", TTS, "--piper-workers", "1"], {}),
    }) as address:
        yield address


async def speak_turn(session: AgentSession, text: str) -> list:
    """Say ``text`` into an open session; its events up to the turn's TurnDone and metrics (the line stays
    open meanwhile: silence, as a microphone sends)."""
    speech = silence(0.3) + speak(text) + silence(0.3)
    return await collect_turn(session, send_silence=True, timeout=120, speech=speech)


async def spoken_turn(address: str, stt) -> list:
    """One spoken question in a session with ``stt`` and local LLM/TTS."""
    async with AgentSession(address=address, stt=stt, llm=LLM, tts=TTS, instructions=INSTRUCTIONS,
                            input_sample_rate=16000, output_sample_rate=16000) as session:
        return await speak_turn(session, QUESTION)


@pytest.mark.parametrize("form", ["descriptor", "plugin instance"])
async def test_a_spoken_turn_with_assemblyai_stt_and_local_llm_and_tts(orchestrator, double, form):
    stt = ("assemblyai/universal-streaming:en" if form == "descriptor"
           else assemblyai.STT(language="en", base_url=double.base_url, api_key=KEY))
    events = await spoken_turn(orchestrator, stt)
    finals = [e for e in events if isinstance(e, UserTranscript) and e.final]
    assert finals and wer([(QUESTION, " ".join(e.text for e in finals))]) <= 0.2, [e.text for e in finals]
    reply = "".join(e.delta for e in events if isinstance(e, AgentText))
    assert "paris" in reply.lower(), reply
    audio = b"".join(e.audio for e in events if e.type == EventType.AGENT_AUDIO)
    assert len(audio) > 16000  # more than half a second of speech
    (metrics,) = [e for e in events if isinstance(e, TurnMetrics)]
    assert metrics.stt_model == "assemblyai/universal-streaming:en"
    assert metrics.voice_to_voice_ms > 0 and metrics.llm_ttft_ms > 0 and metrics.tts_ttfb_ms > 0


async def test_deepgram_plugin_instance_serves_a_spoken_turn(orchestrator, double):
    events = await spoken_turn(orchestrator, deepgram.STT(model="nova-3", base_url=double.base_url, api_key=KEY))
    finals = [e for e in events if isinstance(e, UserTranscript) and e.final]
    assert finals and wer([(QUESTION, " ".join(e.text for e in finals))]) <= 0.2
    (metrics,) = [e for e in events if isinstance(e, TurnMetrics)]
    assert metrics.stt_model == "deepgram/nova-3:en"


@pytest.mark.parametrize(("key", "status"), [("drop", "UNAVAILABLE"), ("stall", "DEADLINE_EXCEEDED")])
async def test_a_provider_that_dies_or_stalls_falls_back_to_the_local_model(orchestrator, double, key, status):
    """The double drops the socket a second into the audio (UNAVAILABLE), or takes the audio and never answers
    (the orchestrator's stall watch): the next model in the list serves the turn from the replayed audio."""
    failing = assemblyai.STT(language="en", base_url=double.base_url, api_key=key)
    events = await spoken_turn(orchestrator, [failing, "faster-whisper/tiny.en:en"])
    finals = [e for e in events if isinstance(e, UserTranscript) and e.final]
    assert finals and wer([(QUESTION, " ".join(e.text for e in finals))]) <= 0.2, [e.text for e in finals]
    (metrics,) = [e for e in events if isinstance(e, TurnMetrics)]
    assert metrics.stt_model == "faster-whisper/tiny.en:en"
    assert any("assemblyai/universal-streaming:en" in entry and status in entry for entry in metrics.fallbacks), \
        metrics.fallbacks


async def test_switching_from_assemblyai_to_the_local_model_keeps_the_history(orchestrator):
    second_question = "And what is the capital of Germany?"
    async with AgentSession(address=orchestrator, stt="assemblyai/universal-streaming:en", llm=LLM, tts=TTS,
                            instructions=INSTRUCTIONS, input_sample_rate=16000, output_sample_rate=16000) as session:
        first = await speak_turn(session, QUESTION)
        await session.update_models(stt="faster-whisper/tiny.en:en")
        second = await speak_turn(session, second_question)
    (m1,), (m2,) = ([e for e in turn if isinstance(e, TurnMetrics)] for turn in (first, second))
    assert (m1.stt_model, m2.stt_model) == ("assemblyai/universal-streaming:en", "faster-whisper/tiny.en:en")
    finals = [e.text for e in second if isinstance(e, UserTranscript) and e.final]
    assert finals and wer([(second_question, " ".join(finals))]) <= 0.2, finals

    def llm_tokens(events: list) -> int:
        return sum(e.usage.input_tokens for e in events if isinstance(e, UsageReport) and e.service == "llm")

    # the second prompt holds the first question and its answer: the history survived the switch
    assert llm_tokens(second) > llm_tokens(first) + 10, (llm_tokens(first), llm_tokens(second))
