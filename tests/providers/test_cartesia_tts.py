"""``cartesia/<model>:<voice>`` in a real TTS service process against the loopback Cartesia double."""

from __future__ import annotations

import pytest

from tests.providers.cartesia_double import CartesiaDouble
from tests.providers.helpers import THREE_PIECES, check_round_trip, refused, speak_three_sentences, speak_with_operator_env
from tests.speech import SENTENCES
from tests.tts.helpers import barge_in, config, transcribe

pytestmark = pytest.mark.slow

KEY = "sk-cartesia-test"
VOICE = "9626c31c-bec5-4cca-baa8-f8ba9e84c8bc"
DESCRIPTOR = f"cartesia/sonic-2:{VOICE}"


@pytest.fixture
def cartesia():
    double = CartesiaDouble(api_key=KEY).start()
    yield double
    double.stop()


async def test_streamed_text_is_one_context_with_continuations_and_transcribes_back(service_process, cartesia):
    server = service_process("tts")
    full = " ".join(SENTENCES[:3])
    spoken = await speak_three_sentences(server.address, DESCRIPTOR, cartesia.base_url, KEY)
    # One context for the reply: each segment a continuation, then a manual flush that ends its audio.
    contexts = {r["context_id"] for r in cartesia.requests}
    assert len(contexts) == 1
    # Cartesia joins a context's transcripts as sent, so each continuation brings its leading space.
    assert [(r["transcript"], r["continue"], r.get("flush", False)) for r in cartesia.requests] == [
        step for i, s in enumerate(THREE_PIECES) for step in ((s if i == 0 else " " + s, True, False), ("", True, True))]
    first = cartesia.requests[0]
    assert first["model_id"] == "sonic-2" and first["voice"] == {"mode": "id", "id": VOICE}
    assert first["output_format"] == {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000}
    assert first["add_timestamps"] is True
    assert cartesia.headers[0]["X-API-Key"] == KEY and cartesia.headers[0]["Cartesia-Version"]
    # Cartesia's word timestamps become each segment's word spans: text in the stream, audio in the segment.
    for segment in spoken.segments:
        assert [w.word for w in segment.words] == segment.text.split()
        assert all(full[w.char_start:w.char_end] == w.word for w in segment.words)
        ends = [(w.start_samples, w.end_samples) for w in segment.words]
        assert all(0 <= a < b <= segment.samples for a, b in ends) and ends == sorted(ends)
        assert ends[-1][1] > segment.samples * 0.8
    check_round_trip("cartesia", spoken, DESCRIPTOR)


async def test_barge_in_cancels_the_context_and_no_audio_follows(service_process, cartesia):
    server = service_process("tts")
    long = " ".join(SENTENCES)
    opening = config(DESCRIPTOR, rate=16000, base_url=cartesia.base_url, api_key=KEY)
    _, after = await barge_in(server.address, opening, long, " Turn off the lights.")
    first_context = cartesia.requests[0]["context_id"]
    assert cartesia.cancelled == [first_context], "the reply's Cartesia context was not cancelled"
    later = [r for r in cartesia.requests if r["context_id"] != first_context and not r.get("cancel")]
    assert later and later[0]["transcript"] == "Turn off the lights.", "the next reply did not get a context of its own"
    audio_after = [r.audio for r in after if r.WhichOneof("event") == "audio"]
    assert audio_after and all(chunk.char_start >= len(long) for chunk in audio_after), \
        "audio of the cancelled context followed the cancel"
    assert "lights" in transcribe(b"".join(c.audio for c in audio_after)).lower()


async def test_the_operators_cartesia_key_and_url_come_from_the_environment(service_process, cartesia):
    server = service_process("tts", env={"VOICEMESH_CARTESIA_BASE_URL": cartesia.base_url, "CARTESIA_API_KEY": KEY})
    spoken = await speak_with_operator_env(server.address, DESCRIPTOR)
    assert spoken.samples > 0 and cartesia.requests[0]["output_format"]["sample_rate"] == 24000


@pytest.mark.parametrize(
    ("fault", "key", "code", "message"),
    [
        ("", "sk-wrong", "UNAUTHENTICATED", "HTTP 401"),
        ("quota", KEY, "RESOURCE_EXHAUSTED", "HTTP 402"),
        ("malformed", KEY, "UNAVAILABLE", "malformed frame"),
        ("drop", KEY, "UNAVAILABLE", "code 1006"),
    ],
)
async def test_cartesia_failures_get_clear_statuses(service_process, fault, key, code, message):
    error = await refused(service_process, CartesiaDouble, DESCRIPTOR, KEY, fault, key)
    assert error.code().name == code, error.details()
    assert message in error.details()
    # What the provider wrote goes to the service's log, never to the client (as with HTTP error bodies).
    assert not any(word in error.details() for word in ("Credit limit",))
