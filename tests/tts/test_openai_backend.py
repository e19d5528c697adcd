"""The remote backend against a loopback server that speaks OpenAI's /v1/audio/speech."""

from __future__ import annotations


import grpc
import pytest

from tests.speech import SENTENCES, wer
from tests.tts.helpers import check_tags, config, pieces, synthesize, text, transcribe
from tests.tts.speech_api import SpeechApi
from voicemesh.process import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def speech_api():
    api = SpeechApi().start()
    yield api
    api.stop()


async def test_remote_speech_streams_back_tagged_and_intelligible(service_process, speech_api):
    server = service_process("tts")
    full = " ".join(SENTENCES[:3])
    requests = [
        config("openai/tts-1:nova", rate=16000, speed=1.0, base_url=speech_api.base_url, api_key="sk-test"),
        *map(text, pieces(full)),
    ]
    spoken = check_tags(full, await synthesize(server.address, requests), 16000)
    # The reply's first sentence in two pieces (its first audio comes sooner), the others whole.
    segments = ["What is the capital", "of France?", *SENTENCES[1:3]]
    assert [s.text for s in spoken.segments] == segments
    # One documented request per segment.
    assert speech_api.requests == [
        {"model": "tts-1", "input": s, "voice": "nova", "response_format": "pcm", "speed": 1.0} for s in segments
    ]
    pairs = []  # per sentence: a two-word piece alone is too little audio for whisper to hear right
    for sentence in SENTENCES[:3]:
        start = full.index(sentence)
        audio = b"".join(bytes(spoken.audio[s.segment_id]) for s in spoken.segments
                         if start <= s.char_start and s.char_end <= start + len(sentence))
        pairs.append((sentence, transcribe(audio)))
    print(f"\nremote TTS round trip WER: {wer(pairs):.1%} {pairs}")
    assert wer(pairs) <= 0.10
    assert spoken.usage.model == "openai/tts-1:nova"


async def test_speed_and_default_voice_reach_the_remote(service_process, speech_api):
    server = service_process("tts")
    line = "Turn off the lights in the kitchen."
    options = {"base_url": speech_api.base_url, "api_key": "sk-test"}
    normal = check_tags(line, await synthesize(server.address, [config("openai/tts-1", **options), text(line)]), 16000)
    fast_requests = [config("openai/tts-1", rate=24000, speed=2.0, **options), text(line)]
    fast = check_tags(line, await synthesize(server.address, fast_requests), 24000)
    # Two requests per stream: "Turn off the lights" first, then "in the kitchen."
    assert [r["input"] for r in speech_api.requests] == ["Turn off the lights", "in the kitchen."] * 2
    assert [r["voice"] for r in speech_api.requests] == ["alloy"] * 4
    assert [r["speed"] for r in speech_api.requests] == [1.0, 1.0, 2.0, 2.0]
    assert 0.35 < (fast.samples / 24000) / (normal.samples / 16000) < 0.7


async def test_server_environment_supplies_base_url_and_key(service_process, speech_api):
    env = {"VOICEMESH_OPENAI_BASE_URL": speech_api.base_url, "VOICEMESH_OPENAI_API_KEY": "sk-test"}
    server = service_process("tts", env=env)
    line = "The train leaves the station at noon."
    spoken = check_tags(line, await synthesize(server.address, [config("openai/tts-1-hd:echo"), text(line)]), 16000)
    assert spoken.samples > 0
    # The sentence in two pieces ("the" leans on "station"), each its own request.
    assert [r["input"] for r in speech_api.requests] == ["The train leaves the station", "at noon."]
    assert [(r["model"], r["voice"]) for r in speech_api.requests] == [("tts-1-hd", "echo")] * 2


@pytest.mark.parametrize(
    ("descriptor", "key", "code", "message"),
    [
        ("openai/tts-1:alloy", "sk-wrong", "UNAUTHENTICATED", "401"),
        ("openai/no-such-model:alloy", "sk-test", "NOT_FOUND", "HTTP 404 (Not Found)"),  # the body stays in the log
        ("openai/tts-1:nobody", "sk-test", "INVALID_ARGUMENT", "400"),
    ],
)
async def test_remote_errors_map_to_status_codes(service_process, speech_api, descriptor, key, code, message):
    server = service_process("tts")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await synthesize(server.address, [config(descriptor, base_url=speech_api.base_url, api_key=key), text("Hi.")])
    assert caught.value.code().name == code
    assert message in caught.value.details()


async def test_remote_down_is_unavailable_and_slow_is_deadline_exceeded(service_process, speech_api):
    server = service_process("tts")
    down = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await synthesize(server.address, [config("openai/tts-1:alloy", base_url=down), text("Hello there.")])
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "cannot reach" in caught.value.details()

    speech_api.delay_s = 3.0
    slow = config("openai/tts-1:alloy", base_url=speech_api.base_url, api_key="sk-test", timeout_s=0.5)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await synthesize(server.address, [slow, text("Hello there.")])
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "did not answer within 0.5 s" in caught.value.details()
