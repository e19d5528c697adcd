"""The deepgram and assemblyai STT backends in a real STT service, against the loopback double of both APIs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from tests.metering.helpers import recorded_usage
from tests.providers.helpers import KEY
from tests.speech import SENTENCES, silence, speak, wer
from tests.stt.helpers import backend_options, events, finals, layout, status_of, stub
from tests.stt.helpers import requests as stream_requests
import voicemesh.metering
from voicemesh.metering import keys
from voicemesh.metering.ledger import open_store
from voicemesh.metering.prices import PriceTable
from voicemesh.v1 import stt_pb2

pytestmark = pytest.mark.slow

MODELS = {"deepgram": "deepgram/nova-3:en", "assemblyai": "assemblyai/universal-streaming:en"}
QUESTION = "What is the capital of France, and how many people live in Paris?"


@pytest.fixture
def stt(service_process):
    return service_process("stt", args=["--preload", ""])


def _recognize(address: str, audio: bytes, model: str, *, pace: float = 0.0, metadata=(), **options):
    backend = backend_options(**options) if options else None
    fields = {"backend": backend} if backend is not None else {}
    return stub(address).Recognize(
        stream_requests(audio, model=model, interim_results=True, pace=pace, **fields), timeout=120,
        metadata=metadata)


@pytest.mark.flaky(reruns=2)  # interims: the double decodes on two busy cores, and a late interim is dropped
@pytest.mark.parametrize("provider", MODELS)
def test_a_spoken_question_gives_interims_then_a_final_with_word_times(stt, double, provider):
    speech = layout([QUESTION], gap_s=1.5)
    responses = list(_recognize(stt.address, speech.audio, MODELS[provider], pace=1.5, base_url=double.base_url,
                                api_key=KEY))
    kinds = [kind for kind, _ in events(responses)]
    print(f"  {provider}: {kinds}")
    assert kinds[0] == "speech_started" and kinds[-3:] == ["final", "speech_ended", "usage"]
    assert "interim" in kinds and kinds.index("interim") < kinds.index("final")
    assert kinds.count("final") == 1
    (final,) = finals(responses)
    assert wer([(QUESTION, final.text)]) <= 0.2, final.text
    start, end = speech.truth[0]
    assert final.words and start - 400 <= final.words[0].start_ms <= final.words[-1].end_ms <= end + 400
    if provider == "assemblyai":
        assert final.text.endswith("?") and final.text[0].isupper()  # the formatted turn, not the raw one
    usage = responses[-1].usage
    assert usage.model == MODELS[provider]
    assert usage.audio_seconds_in == pytest.approx(len(speech.audio) / 2 / 16000, abs=0.001)


@pytest.mark.parametrize("provider", MODELS)
def test_provider_errors_map_to_clear_statuses(stt, double, provider):
    audio = layout(SENTENCES[:1]).audio
    expected = {"wrong-key": grpc.StatusCode.UNAUTHENTICATED, "quota": grpc.StatusCode.RESOURCE_EXHAUSTED,
                "malformed": grpc.StatusCode.UNAVAILABLE, "drop": grpc.StatusCode.UNAVAILABLE}
    words = {"malformed": "malformed frame", "drop": "dropped without a close frame"}
    for key, code in expected.items():
        got, details = status_of(_recognize(stt.address, audio, MODELS[provider], base_url=double.base_url,
                                            api_key=key))
        print(f"  {provider} {key}: {got.name}: {details}")
        assert got == code, (key, got, details)
        assert provider in details and words.get(key, "") in details
    # the service is unharmed: the next stream works
    assert finals(list(_recognize(stt.address, audio, MODELS[provider], base_url=double.base_url, api_key=KEY)))


def test_a_provider_that_is_down_is_unavailable(stt):
    audio = layout(SENTENCES[:1]).audio
    for model in MODELS.values():
        code, details = status_of(_recognize(stt.address, audio, model, base_url="ws://127.0.0.1:9", api_key=KEY))
        assert code == grpc.StatusCode.UNAVAILABLE and "cannot reach" in details, details


def test_deepgram_keepalive_holds_an_idle_stream_open(stt, double):
    """Deepgram closes a stream after 10 s without audio (NET-0001); KeepAlive must carry it over a pause."""
    question = speak(QUESTION)

    def paused():
        yield stt_pb2.RecognizeRequest(config=stt_pb2.RecognitionConfig(
            model=MODELS["deepgram"], sample_rate_hz=16000,
            backend=backend_options(base_url=double.base_url, api_key=KEY)))
        for part, pcm in enumerate((silence(0.5) + question + silence(1.5), question + silence(1.5))):
            for i in range(0, len(pcm), 3200):
                yield stt_pb2.RecognizeRequest(audio=pcm[i:i + 3200])
            if part == 0:
                time.sleep(12)  # no audio for longer than Deepgram's 10 s

    responses = list(stub(stt.address).Recognize(paused(), timeout=120))
    texts = [f.text for f in finals(responses)]
    assert len(texts) == 2 and wer([(QUESTION, t) for t in texts]) <= 0.2, texts


def test_keys_and_urls_come_from_the_providers_own_variables(service_process, double):
    stt = service_process("stt", args=["--preload", ""], env={
        "DEEPGRAM_API_KEY": KEY, "VOICEMESH_DEEPGRAM_BASE_URL": double.base_url,
        "ASSEMBLYAI_API_KEY": KEY, "VOICEMESH_ASSEMBLYAI_BASE_URL": double.base_url})
    audio = layout([QUESTION]).audio
    for model in MODELS.values():
        (final,) = finals(list(_recognize(stt.address, audio, model)))
        assert wer([(QUESTION, final.text)]) <= 0.2


def test_describe_lists_the_native_providers_with_their_capabilities(stt):
    description = stub(stt.address).Describe(stt_pb2.SttServiceDescribeRequest()).description
    models = {m.descriptor: m for m in description.models}
    for descriptor in ("deepgram/nova-3", "assemblyai/universal-streaming"):
        caps = models[descriptor].capabilities
        assert caps.streaming and caps.interim_results and caps.word_times, caps
        assert "WebSocket" in models[descriptor].description


def test_usage_lands_in_the_ledger_in_audio_seconds_and_is_priced(service_process, double, tmp_path):
    url = f"sqlite:///{tmp_path}/ledger.db"
    stt = service_process("stt", args=["--preload", ""], env={"VOICEMESH_LEDGER": url})
    store = open_store(url)
    record, key = keys.create_key(store, "stt-providers")
    audio = layout([QUESTION]).audio
    seconds = len(audio) / 2 / 16000
    for model in MODELS.values():
        responses = list(_recognize(stt.address, audio, model, base_url=double.base_url, api_key=KEY,
                                    metadata=[("authorization", f"Bearer {key}")]))
        assert responses[-1].usage.audio_seconds_in == pytest.approx(seconds, abs=0.001)
    records = asyncio.run(recorded_usage(store, record.id))
    store.close()
    assert sorted((r.service, r.model) for r in records) == sorted(("stt", m) for m in MODELS.values())
    assert all(r.audio_seconds_in == pytest.approx(seconds, abs=0.001) for r in records)
    prices = PriceTable.load(Path(voicemesh.metering.__file__).parent / "prices.example.json")
    for r in records:
        assert prices.cost(r.model, {"audio_seconds_in": r.audio_seconds_in}) > 0, r.model
