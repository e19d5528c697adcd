"""The LiveKit Inference example that VoiceMesh mirrors, run as written:

    AgentSession(stt="assemblyai/universal-streaming:en", llm="openai/gpt-4.1-mini",
                 tts="cartesia/sonic-2:9626c31c-bec5-4cca-baa8-f8ba9e84c8bc")

Each provider is the operator's: its key and URL come from the services' environment and point at
loopback stand-ins that speak the provider's API (the AssemblyAI and Cartesia doubles, and llama.cpp's
own OpenAI-compatible server for the chat). The client names only the descriptors.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.llm.test_remote import API_KEY as OPENAI_KEY
from tests.llm.test_remote import llama_server  # noqa: F401 - a fixture
from tests.orchestrator.test_native_tts_session import KEY as CARTESIA_KEY
from tests.orchestrator.test_native_tts_session import VOICE
from tests.orchestrator.test_native_tts_session import spoken_turn as speak_and_collect
from tests.providers.cartesia_double import CartesiaDouble
from tests.providers.helpers import KEY as ASSEMBLYAI_KEY
from tests.providers.helpers import SttDouble, mesh
from tests.speech import wer
from voicemesh.client import AgentSession, assemblyai, cartesia, openai

pytestmark = pytest.mark.slow

STT = "assemblyai/universal-streaming:en"
LLM = "openai/gpt-4.1-mini"
TTS = f"cartesia/sonic-2:{VOICE}"
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def doubles() -> Iterator[tuple[SttDouble, CartesiaDouble]]:
    stt, tts = SttDouble(), CartesiaDouble(api_key=CARTESIA_KEY).start()
    yield stt, tts
    tts.stop()
    stt.stop()


@pytest.fixture(scope="module")
def orchestrator(doubles, llama_server, tmp_path_factory) -> Iterator[str]:  # noqa: F811
    stt_double, tts_double = doubles
    with mesh(tmp_path_factory.mktemp("livekit-example"), {
        "stt": (["--preload", ""], {"ASSEMBLYAI_API_KEY": ASSEMBLYAI_KEY,
                                    "VOICEMESH_ASSEMBLYAI_BASE_URL": stt_double.base_url}),
        "llm": (["--preload", ""], {"OPENAI_API_KEY": OPENAI_KEY, "OPENAI_BASE_URL": llama_server}),
        "tts": (["--preload", ""], {"CARTESIA_API_KEY": CARTESIA_KEY, "VOICEMESH_CARTESIA_BASE_URL": tts_double.base_url}),
    }) as address:
        yield address


def plugin_instances() -> dict:
    """The same three models as LiveKit's plugin objects (no URL or key: the operator's apply)."""
    return {"stt": assemblyai.STT(language="en"), "llm": openai.LLM(model="gpt-4.1-mini"),
            "tts": cartesia.TTS(model="sonic-2", voice=VOICE)}


@pytest.mark.parametrize("form", ["descriptors", "plugin instances"])
async def test_the_livekit_inference_example_runs_a_spoken_turn_as_written(orchestrator, form):
    models = {"stt": STT, "llm": LLM, "tts": TTS} if form == "descriptors" else plugin_instances()
    async with AgentSession(address=orchestrator, instructions="Answer in one short sentence.", **models) as session:
        turn = await speak_and_collect(session, QUESTION)
    assert not turn["errors"], turn["errors"]
    assert wer([(QUESTION, turn["heard"])]) <= 0.2, turn["heard"]
    assert turn["text"].strip(), "the LLM answered"
    assert len(turn["audio"]) > 16000, "more than half a second of the agent's speech"
    (metrics,) = turn["metrics"]
    assert (metrics.stt_model, metrics.llm_model, metrics.tts_model) == (STT, LLM, TTS)
    assert metrics.voice_to_voice_ms > 0 and metrics.llm_ttft_ms > 0 and metrics.tts_ttfb_ms > 0
    # The turn's LLM and TTS usage is reported with the turn (the STT stream's spans the session, reported at its end).
    services = {report.service for report in turn["usage"]}
    assert {"llm", "tts"} <= services, services
