"""The openai backend against a loopback server that speaks OpenAI's transcription API."""

from __future__ import annotations

import grpc
import pytest

from tests.speech import SENTENCES, wer
from tests.stt.helpers import TranscriptionServer, backend_options, events, finals, layout, recognize, status_of, stub
from tests.stt.helpers import requests as stream_requests
from voicemesh.process import free_port

KEY = "sk-test-0123"


@pytest.fixture(scope="module")
def api():
    server = TranscriptionServer("--api-key", KEY)
    yield server
    server.stop()


@pytest.fixture
def stt(service_process):
    return service_process("stt", args=["--preload", ""])


def _remote(stt, audio, model="openai/whisper-1:en", **options):
    return stub(stt.address).Recognize(
        stream_requests(audio, model=model, backend=backend_options(**options)), timeout=120)


def test_remote_backend_transcribes_each_utterance_with_word_times(stt, api):
    speech = layout(SENTENCES[5:7], gap_s=1.2)
    responses = list(_remote(stt, speech.audio, base_url=api.base_url, api_key=KEY))
    kinds = [kind for kind, _ in events(responses)]
    assert kinds == ["speech_started", "final", "speech_ended"] * 2 + ["usage"]
    transcripts = finals(responses)
    for transcript, text, (start, end) in zip(transcripts, speech.texts, speech.truth):
        print(f"  {transcript.start_ms}-{transcript.end_ms} ms (truth {start:.0f}-{end:.0f}): {transcript.text}")
        assert wer([(text, transcript.text)]) <= 0.2
        assert transcript.language == "en"
        assert transcript.words and start - 300 <= transcript.words[0].start_ms <= transcript.words[-1].end_ms <= end + 300
    assert responses[-1].usage.model == "openai/whisper-1:en"


def test_plain_json_format_gives_text_without_words(stt, api):
    speech = layout(SENTENCES[:1])
    responses = list(_remote(stt, speech.audio, base_url=api.base_url, api_key=KEY,
                             extra={"response_format": "json"}))
    (transcript,) = finals(responses)
    assert wer([(SENTENCES[0], transcript.text)]) <= 0.2
    assert not transcript.words


def test_wrong_key_and_unknown_remote_model_map_to_status_codes(stt, api):
    speech = layout(SENTENCES[:1])
    code, details = status_of(_remote(stt, speech.audio, base_url=api.base_url, api_key="sk-wrong"))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "HTTP 401 (Unauthorized)" in details
    assert "Incorrect API key" not in details  # the remote's body is logged for the operator, not relayed
    code, details = status_of(_remote(stt, speech.audio, model="openai/whisper-9:en", base_url=api.base_url,
                                      api_key=KEY))
    assert code == grpc.StatusCode.NOT_FOUND and "whisper-9" in details


def test_remote_server_down_is_unavailable_and_slow_is_deadline_exceeded(stt):
    speech = layout(SENTENCES[:1])
    code, details = status_of(_remote(stt, speech.audio, base_url=f"http://127.0.0.1:{free_port()}/v1", api_key=KEY))
    print(f"  down: {code.name}: {details}")
    assert code == grpc.StatusCode.UNAVAILABLE and "cannot reach" in details

    slow = TranscriptionServer("--delay", "5")
    try:
        code, details = status_of(_remote(stt, speech.audio, base_url=slow.base_url, timeout_s=0.5))
    finally:
        slow.stop()
    print(f"  slow: {code.name}: {details}")
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED and "0.5 s" in details

    # the server still serves the local backend after both failures
    assert finals(recognize(stt.address, speech.audio))[0].text


def test_base_url_and_key_come_from_the_environment_when_the_config_has_none(service_process, api):
    stt = service_process("stt", args=["--preload", ""],
                          env={"VOICEMESH_OPENAI_BASE_URL": api.base_url, "VOICEMESH_OPENAI_API_KEY": KEY})
    speech = layout(SENTENCES[7:8])
    responses = list(stub(stt.address).Recognize(stream_requests(speech.audio, model="openai/whisper-1:en"),
                                                 timeout=120))
    (transcript,) = finals(responses)
    assert wer([(SENTENCES[7], transcript.text)]) <= 0.2
