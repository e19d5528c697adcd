"""Concurrency and admission control on a real stt process."""

from __future__ import annotations

import threading
import time

import grpc

from tests.speech import SENTENCES, silence, speak, wer
from tests.stt.helpers import config, finals, recognize, status_of, stub
from voicemesh.audio import chunks
from voicemesh.v1 import stt_pb2


def _held_stream(address: str, text: str, started: threading.Event, release: threading.Event, out: dict) -> None:
    """Send speech, wait for ``release``, then the trailing silence; keep every response."""

    def gen():
        yield config()
        for chunk in chunks(silence(0.3) + speak(text), rate=16000, ms=100):
            yield stt_pb2.RecognizeRequest(audio=chunk)
        release.wait(120)
        for chunk in chunks(silence(1.0), rate=16000, ms=100):
            yield stt_pb2.RecognizeRequest(audio=chunk)

    responses = []
    try:
        for response in stub(address).Recognize(gen(), timeout=180):
            responses.append(response)
            if response.WhichOneof("event") == "speech_started":
                started.set()
    except grpc.RpcError as error:
        out["error"] = error
    out["responses"] = responses


def test_ten_concurrent_streams_get_correct_finals_and_an_eleventh_is_refused(service_process):
    stt = service_process("stt", args=["--workers", "2", "--queue", "8"])
    release = threading.Event()
    streams = []
    for text in SENTENCES[:10]:
        started, out = threading.Event(), {}
        thread = threading.Thread(target=_held_stream, args=(stt.address, text, started, release, out), daemon=True)
        thread.start()
        streams.append((text, started, out, thread))
    try:
        for _, started, out, _ in streams:
            assert started.wait(120), out.get("error")
        # all ten are open and mid-utterance: an eleventh is refused at once, before its audio is read
        gate = threading.Event()

        def eleventh():
            yield config()
            gate.wait(60)

        code, details = status_of(stub(stt.address).Recognize(eleventh(), timeout=60))
        gate.set()
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
        assert "10 of 10" in details
    finally:
        release.set()
    for text, _, out, thread in streams:
        thread.join(180)
        assert "error" not in out, out.get("error")
        transcripts = finals(out["responses"])
        print(f"  {text!r} -> {[t.text for t in transcripts]}")
        assert len(transcripts) == 1
        assert wer([(text, transcripts[0].text)]) <= 0.2
        assert out["responses"][-1].WhichOneof("event") == "usage"


def test_a_cancelled_client_frees_its_worker(service_process):
    stt = service_process("stt", args=["--workers", "1", "--queue", "0"])
    speech_started = threading.Event()

    def first_stream():
        yield config()
        for chunk in chunks(silence(0.3) + speak(SENTENCES[4]) + silence(1.0), rate=16000, ms=50):
            yield stt_pb2.RecognizeRequest(audio=chunk)
            time.sleep(0.05)

    call = stub(stt.address).Recognize(first_stream(), timeout=120)
    for response in call:
        if response.WhichOneof("event") == "speech_started":
            speech_started.set()
            break
    assert speech_started.is_set()

    # the only slot is taken: another stream is refused while the first one is mid-utterance
    gate = threading.Event()

    def refused():
        yield config()
        gate.wait(60)

    code, details = status_of(stub(stt.address).Recognize(refused(), timeout=60))
    gate.set()
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details

    call.cancel()
    assert status_of(call)[0] == grpc.StatusCode.CANCELLED

    # the cancellation reaches the server asynchronously; a later stream is admitted once it has
    audio = silence(0.3) + speak(SENTENCES[8]) + silence(1.0)
    for _ in range(50):
        try:
            responses = recognize(stt.address, audio)
            break
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
            time.sleep(0.2)
    else:
        raise AssertionError("the cancelled stream never released its slot")
    assert wer([(SENTENCES[8], finals(responses)[0].text)]) <= 0.2
