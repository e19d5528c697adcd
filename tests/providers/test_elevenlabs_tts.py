"""``elevenlabs/<model>:<voice>`` in a real TTS service process against the loopback ElevenLabs double."""

from __future__ import annotations

import asyncio

import pytest

from tests.providers.elevenlabs_double import ElevenLabsDouble
from tests.providers.helpers import THREE_PIECES, check_round_trip, refused, speak_three_sentences, speak_with_operator_env
from tests.speech import SENTENCES
from tests.tts.helpers import barge_in, config, transcribe

pytestmark = pytest.mark.slow

KEY = "xi-test"
VOICE = "21m00Tcm4TlvDq8ikWAM"
DESCRIPTOR = f"elevenlabs/eleven_flash_v2_5:{VOICE}"


@pytest.fixture
def eleven():
    double = ElevenLabsDouble(api_key=KEY).start()
    yield double
    double.stop()


async def test_streamed_text_is_one_socket_with_flushes_and_transcribes_back(service_process, eleven):
    server = service_process("tts")
    spoken = await speak_three_sentences(server.address, DESCRIPTOR, eleven.base_url, KEY)
    [socket] = eleven.connections
    for _ in range(100):  # the end of input reaches the double just after the stream's end
        if socket.final_sent:
            break
        await asyncio.sleep(0.02)
    assert socket.voice == VOICE and socket.query == {"model_id": "eleven_flash_v2_5", "output_format": "pcm_16000"}
    assert socket.headers["xi-api-key"] == KEY
    assert socket.messages[0]["text"] == " "
    assert [(m["text"], m.get("flush")) for m in socket.messages[1:]] == [
        *((s + " ", True) for s in THREE_PIECES), ("", None)]
    check_round_trip("elevenlabs", spoken, DESCRIPTOR)


async def test_barge_in_closes_the_socket_and_no_audio_follows(service_process, eleven):
    server = service_process("tts")
    long = " ".join(SENTENCES)
    opening = config(DESCRIPTOR, rate=16000, base_url=eleven.base_url, api_key=KEY)
    _, after = await barge_in(server.address, opening, long, " Turn off the lights.")
    first, *rest = eleven.connections
    assert first.closed_by_client, "the reply's ElevenLabs socket stayed open after the barge-in"
    assert len(rest) == 1 and rest[0].messages[1]["text"] == "Turn off the lights. "
    audio_after = [r.audio for r in after if r.WhichOneof("event") == "audio"]
    assert audio_after and all(chunk.char_start >= len(long) for chunk in audio_after)
    assert "lights" in transcribe(b"".join(c.audio for c in audio_after)).lower()


async def test_the_operators_eleven_key_and_url_come_from_the_environment(service_process, eleven):
    server = service_process("tts", env={"VOICEMESH_ELEVENLABS_BASE_URL": eleven.base_url, "ELEVEN_API_KEY": KEY})
    spoken = await speak_with_operator_env(server.address, DESCRIPTOR)
    assert spoken.samples > 0 and eleven.connections[0].query["output_format"] == "pcm_24000"


@pytest.mark.parametrize(
    ("fault", "key", "code", "message"),
    [
        ("", "xi-wrong", "UNAUTHENTICATED", "API key was refused"),
        ("quota", KEY, "RESOURCE_EXHAUSTED", "over quota"),
        ("malformed", KEY, "UNAVAILABLE", "malformed frame"),
        ("drop", KEY, "UNAVAILABLE", "code 1006"),
    ],
)
async def test_elevenlabs_failures_get_clear_statuses(service_process, fault, key, code, message):
    error = await refused(service_process, ElevenLabsDouble, DESCRIPTOR, KEY, fault, key)
    assert error.code().name == code, error.details()
    assert message in error.details()
    # What the provider wrote goes to the service's log, never to the client (as with HTTP error bodies).
    assert not any(word in error.details() for word in ("exceeds your quota", "Invalid API key"))
