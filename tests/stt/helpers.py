"""What the stt tests share: a gRPC client, speech layouts and energy-based truth."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import numpy as np

from tests.speech import silence, speak
from voicemesh.audio import chunks
from voicemesh.process import free_port
from voicemesh.v1 import common_pb2, stt_pb2, stt_pb2_grpc

MODEL = "faster-whisper/tiny.en:en"


def config(rate: int = 16000, model: str = MODEL, **fields) -> stt_pb2.RecognizeRequest:
    return stt_pb2.RecognizeRequest(config=stt_pb2.RecognitionConfig(model=model, sample_rate_hz=rate, **fields))


def requests(audio: bytes, rate: int = 16000, *, chunk_ms: int = 100, pace: float = 0.0,
             first: stt_pb2.RecognizeRequest | None = None, **fields) -> Iterator[stt_pb2.RecognizeRequest]:
    """Config then audio chunks; ``pace`` > 0 sends at that many times real time."""
    yield first if first is not None else config(rate, **fields)
    for chunk in chunks(audio, rate=rate, ms=chunk_ms):
        yield stt_pb2.RecognizeRequest(audio=chunk)
        if pace:
            time.sleep(chunk_ms / 1000 / pace)


def stub(address: str) -> stt_pb2_grpc.SttServiceStub:
    return stt_pb2_grpc.SttServiceStub(grpc.insecure_channel(address))


def recognize(address: str, audio: bytes, rate: int = 16000, timeout: float = 120, **kwargs) -> list:
    """Run one stream to its end; the responses in order."""
    return list(stub(address).Recognize(requests(audio, rate, **kwargs), timeout=timeout))


def events(responses: list) -> list[tuple[str, object]]:
    return [(r.WhichOneof("event"), getattr(r, r.WhichOneof("event"))) for r in responses]


def finals(responses: list) -> list[stt_pb2.Transcript]:
    return [r.final for r in responses if r.WhichOneof("event") == "final"]


def speech_bounds(pcm: bytes, rate: int) -> tuple[float, float]:
    """(start, end) in seconds of the audible part of ``pcm``: 10 ms frames within 35 dB of the loudest."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    hop = rate // 100
    frames = samples[: len(samples) // hop * hop].reshape(-1, hop)
    level = 20 * np.log10(np.sqrt((frames ** 2).mean(axis=1)) + 1e-9)
    loud = np.flatnonzero(level > level.max() - 35)
    return loud[0] * hop / rate, (loud[-1] + 1) * hop / rate


@dataclass
class Layout:
    """Speech placed in a stream: the audio and the true (start, end) of each utterance in ms."""

    audio: bytes = b""
    truth: list[tuple[float, float]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


def layout(texts: list[str], rate: int = 16000, gap_s: float = 1.2, lead_s: float = 0.6) -> Layout:
    out = Layout(audio=silence(lead_s, rate))
    for text in texts:
        pcm = speak(text, rate)
        start, end = speech_bounds(pcm, rate)
        offset = len(out.audio) / 2 / rate
        out.truth.append(((offset + start) * 1000, (offset + end) * 1000))
        out.texts.append(text)
        out.audio += pcm + silence(gap_s, rate)
    return out


def status_of(call) -> tuple[grpc.StatusCode, str]:
    """Drain a streaming call; the code and details it ended with."""
    try:
        for _ in call:
            pass
    except grpc.RpcError as error:
        return error.code(), error.details()
    return grpc.StatusCode.OK, ""


def backend_options(base_url: str, **fields) -> common_pb2.BackendOptions:
    return common_pb2.BackendOptions(base_url=base_url, **fields)


class TranscriptionServer:
    """tests/stt/openai_server.py in a child process on a free loopback port."""

    def __init__(self, *args: str):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._proc = subprocess.Popen([sys.executable, "-m", "tests.stt.openai_server", "--port", str(self.port),
                                       *args], stdout=subprocess.PIPE, text=True)
        line = self._proc.stdout.readline()
        if line.strip() != "READY":
            self.stop()
            raise RuntimeError(f"transcription server did not start: {line!r}")

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(10)
