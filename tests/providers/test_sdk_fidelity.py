"""The providers' own Python SDKs (``deepgram-sdk``, ``assemblyai``) against the STT double.

Their streaming clients build the URL, the auth header and the control messages
their way and parse every answer into their own typed models: when they accept
the double, the double speaks the documented protocol, not merely what our
backends expect.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from tests.providers.helpers import KEY, SttDouble
from tests.speech import wer
from tests.stt.helpers import layout
from voicemesh.audio import chunks

deepgram = pytest.importorskip("deepgram", reason="deepgram-sdk is a dev dependency")
assemblyai = pytest.importorskip("assemblyai", reason="assemblyai is a dev dependency")

pytestmark = pytest.mark.slow
QUESTION = "What is the capital of France, and how many people live in Paris?"


def _client(double: SttDouble, key: str):
    from deepgram import AsyncDeepgramClient
    from deepgram.environment import DeepgramClientEnvironment

    http = double.base_url.replace("ws://", "http://")
    environment = DeepgramClientEnvironment(base=http, production=double.base_url, agent=double.base_url,
                                            agent_rest=http)
    return AsyncDeepgramClient(api_key=key, environment=environment, reconnect=False)


@pytest.mark.flaky(reruns=2)  # interims: the double decodes on two busy cores, and a late interim is dropped
async def test_deepgram_sdk_live_client_reads_the_double(double):
    from deepgram.listen.v1.types import ListenV1Metadata, ListenV1Results, ListenV1SpeechStarted, ListenV1UtteranceEnd

    speech = layout([QUESTION], gap_s=1.5)
    async with _client(double, KEY).listen.v1.connect(
            model="nova-3", language="en", encoding="linear16", sample_rate="16000", interim_results="true",
            vad_events="true", utterance_end_ms="1000", endpointing="300") as socket:
        async def send() -> None:
            for chunk in chunks(speech.audio, rate=16000, ms=100):
                await socket.send_media(chunk)
                await asyncio.sleep(0.1)  # real time, as a live stream comes
            await socket.send_keep_alive()
            await socket.send_close_stream()

        sender = asyncio.create_task(send())
        messages = [message async for message in socket]
        await sender
    kinds = [type(m).__name__ for m in messages]
    print(f"  {kinds}")
    assert isinstance(messages[0], ListenV1SpeechStarted) and isinstance(messages[-1], ListenV1Metadata)
    results = [m for m in messages if isinstance(m, ListenV1Results)]
    interims, settled = [r for r in results if not r.is_final], [r for r in results if r.is_final]
    assert interims and len(settled) == 1 and settled[0].speech_final, kinds
    assert wer([(QUESTION, settled[0].channel.alternatives[0].transcript)]) <= 0.2
    assert settled[0].channel.alternatives[0].words[0].punctuated_word
    assert any(isinstance(m, ListenV1UtteranceEnd) for m in messages)
    assert messages[-1].duration == pytest.approx(len(speech.audio) / 32000, abs=0.01)


async def test_deepgram_sdk_sees_a_bad_key_as_http_401(double):
    from deepgram.core.api_error import ApiError

    with pytest.raises(ApiError) as info:
        async with _client(double, "wrong").listen.v1.connect(model="nova-3", encoding="linear16",
                                                              sample_rate="16000"):
            pass
    assert info.value.status_code == 401


def _assemblyai(double: SttDouble, key: str, audio: bytes) -> dict[str, list]:
    """Run AssemblyAI's StreamingClient over ``audio``; the events it reported, by kind."""
    from assemblyai.streaming.v3 import (
        StreamingClient,
        StreamingClientOptions,
        StreamingEvents,
        StreamingParameters,
    )

    seen: dict[str, list] = {"begin": [], "turn": [], "termination": [], "error": []}
    client = StreamingClient(StreamingClientOptions(api_key=key, api_host=double.base_url))
    client.on(StreamingEvents.Begin, lambda _, event: seen["begin"].append(event))
    client.on(StreamingEvents.Turn, lambda _, event: seen["turn"].append(event))
    client.on(StreamingEvents.Termination, lambda _, event: seen["termination"].append(event))
    client.on(StreamingEvents.Error, lambda _, error: seen["error"].append(error))
    client.connect(StreamingParameters(sample_rate=16000, format_turns=True))
    audio += bytes(-len(audio) % 3200)  # whole 100 ms messages: AssemblyAI refuses one under 50 ms (3007)
    try:
        if not seen["error"]:
            client.stream(_paced(audio))
    finally:
        client.disconnect(terminate=True)
    return seen


def _paced(audio: bytes):
    """100 ms messages at real time, as a live stream comes (so the double has time for partials)."""
    for chunk in chunks(audio, rate=16000, ms=100):
        yield chunk
        time.sleep(0.1)


@pytest.mark.flaky(reruns=2)  # interims: the double decodes on two busy cores, and a late interim is dropped
def test_assemblyai_sdk_streaming_client_reads_the_double(double):
    speech = layout([QUESTION], gap_s=1.5)
    seen = _assemblyai(double, KEY, speech.audio)
    assert not seen["error"], seen["error"]
    assert len(seen["begin"]) == 1 and seen["begin"][0].id
    turns = seen["turn"]
    partials = [t for t in turns if not t.end_of_turn]
    ended = [t for t in turns if t.end_of_turn]
    assert partials and [t.turn_is_formatted for t in ended] == [False, True]
    assert ended[1].transcript.endswith("?") and wer([(QUESTION, ended[1].transcript)]) <= 0.2
    assert all(w.word_is_final for w in ended[1].words)
    assert len(seen["termination"]) == 1
    assert seen["termination"][0].audio_duration_seconds == round(len(speech.audio) / 32000 + 0.05)


def test_assemblyai_sdk_reports_a_bad_key_and_quota_by_close_code(double):
    audio = layout([QUESTION]).audio
    codes = {}
    for key in ("wrong", "quota"):
        errors = _assemblyai(double, key, audio)["error"]
        assert errors, key
        codes[key] = errors[0].code
    assert codes == {"wrong": 1008, "quota": 3009}
    assert threading.active_count() < 50  # the SDK's reader threads ended with their sessions
