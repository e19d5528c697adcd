"""Bad input gets a clear status while other streams on the same server keep working."""

from __future__ import annotations

import threading

import grpc
import pytest

from tests.speech import SENTENCES, silence, speak, wer
from tests.stt.helpers import config, finals, recognize, status_of, stub
from voicemesh.runtime.status import detail_of
from voicemesh.v1 import stt_pb2


def _call(address: str, *messages: stt_pb2.RecognizeRequest):
    return stub(address).Recognize(iter(messages), timeout=60)


def _audio(data: bytes) -> stt_pb2.RecognizeRequest:
    return stt_pb2.RecognizeRequest(audio=data)


def test_bad_streams_get_clear_errors_and_a_good_stream_keeps_working(service_process):
    stt = service_process("stt")
    good_audio = silence(0.3) + speak(SENTENCES[9]) + silence(1.0)
    good: dict = {}
    thread = threading.Thread(
        target=lambda: good.update(responses=recognize(stt.address, good_audio, chunk_ms=20, pace=1.0)), daemon=True)
    thread.start()

    cases = [
        ("no config first", (_audio(bytes(320)),), grpc.StatusCode.INVALID_ARGUMENT, "first message must be a config"),
        ("empty stream", (), grpc.StatusCode.INVALID_ARGUMENT, "first message"),
        ("rate too low", (config(rate=4000),), grpc.StatusCode.INVALID_ARGUMENT, "between 8000 and 48000"),
        ("rate too high", (config(rate=96000),), grpc.StatusCode.INVALID_ARGUMENT, "got 96000"),
        ("no rate", (config(rate=0),), grpc.StatusCode.INVALID_ARGUMENT, "sample_rate_hz"),
        ("odd byte count", (config(), _audio(bytes(321))), grpc.StatusCode.INVALID_ARGUMENT, "odd byte count"),
        ("chunk over 1 s", (config(), _audio(bytes(2 * 16001))), grpc.StatusCode.INVALID_ARGUMENT, "over the limit"),
        ("48 kHz chunk over 1 s", (config(rate=48000), _audio(bytes(2 * 48001))), grpc.StatusCode.INVALID_ARGUMENT,
         "over the limit"),
        ("second config", (config(), _audio(bytes(320)), config()), grpc.StatusCode.INVALID_ARGUMENT,
         "only the first message"),
        ("language the model lacks", (config(model="faster-whisper/tiny.en:fr"),), grpc.StatusCode.INVALID_ARGUMENT,
         "does not handle language 'fr'"),
        ("negative min silence", (stt_pb2.RecognizeRequest(config=stt_pb2.RecognitionConfig(
            model="faster-whisper/tiny.en:en", sample_rate_hz=16000,
            endpointing=stt_pb2.Endpointing(min_silence_ms=-20))),), grpc.StatusCode.INVALID_ARGUMENT, "min_silence_ms"),
        ("speech threshold over 1", (stt_pb2.RecognizeRequest(config=stt_pb2.RecognitionConfig(
            model="faster-whisper/tiny.en:en", sample_rate_hz=16000,
            endpointing=stt_pb2.Endpointing(speech_threshold=1.5))),), grpc.StatusCode.INVALID_ARGUMENT,
         "speech_threshold"),
        ("bad descriptor", (config(model="tiny.en"),), grpc.StatusCode.INVALID_ARGUMENT, "provider/model"),
        ("unknown provider", (config(model="whisperx/large:en"),), grpc.StatusCode.NOT_FOUND, "faster-whisper"),
        ("unknown model", (config(model="faster-whisper/large-v3:en"),), grpc.StatusCode.NOT_FOUND,
         "faster-whisper/tiny.en:en"),
    ]
    for name, messages, code, text in cases:
        call = _call(stt.address, *messages)
        got, details = status_of(call)
        print(f"  {name}: {got.name}: {details}")
        assert got == code, (name, details)
        assert text in details, (name, details)

    with pytest.raises(grpc.RpcError) as failure:
        list(_call(stt.address, config(model="faster-whisper/large-v3:en")))
    detail = detail_of(failure.value)
    assert detail is not None and detail.reason == "UNKNOWN_MODEL"
    assert "faster-whisper/tiny.en:en" in detail.known

    thread.join(120)
    transcripts = finals(good["responses"])
    assert len(transcripts) == 1 and wer([(SENTENCES[9], transcripts[0].text)]) <= 0.2
