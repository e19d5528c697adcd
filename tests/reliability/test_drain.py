"""Graceful drain and admission by load, on real TTS service processes.

Drain: after SIGTERM the service reports NOT_SERVING with its port still open, refuses a new stream
with UNAVAILABLE "draining", closes an idle stream at once with a clear status, and lets a busy one
finish. Load: a service whose event loop runs late refuses the next stream with RESOURCE_EXHAUSTED
"overloaded, retry elsewhere" while the stream it admitted goes on.
"""

from __future__ import annotations

import os
import queue
import signal
import textwrap
import threading
import time
from pathlib import Path

import grpc
import pytest

from voicemesh.process import health
from voicemesh.runtime.status import detail_of
from voicemesh.v1 import tts_pb2, tts_pb2_grpc

VOICE = "piper/en_US-joe-medium"
BUSY = "busy/model"

# A TTS provider that blocks the event loop for 0.3 s per text, as a backend doing its work on the loop
# would: the way to make a server overloaded on purpose, whatever else runs on the machine.
BUSY_SOURCE = textwrap.dedent(
    '''
    import time

    from voicemesh.backend import ModelCard
    from voicemesh.services.tts.backend import TtsBackend


    class BusyBackend(TtsBackend):
        provider = "busy"

        @classmethod
        def catalog(cls, settings):
            return [ModelCard(descriptor="busy/model", description="blocks the event loop 0.3 s per text")]

        def native_rate(self, voice):
            return 16000

        async def stream(self, text, options):
            time.sleep(0.3)
            yield bytes(3200)
    '''
)


def install_busy(path: Path) -> dict[str, str]:
    """Write the busy provider as an installed distribution under ``path``; the env that finds it."""
    (path / "voicemesh_busyplugin.py").write_text(BUSY_SOURCE)
    info = path / "voicemesh_busyplugin-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: voicemesh_busyplugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[voicemesh.tts]\nbusy = voicemesh_busyplugin:BusyBackend\n")
    return {"PYTHONPATH": f"{path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def config(voice: str) -> tts_pb2.SynthesizeRequest:
    return tts_pb2.SynthesizeRequest(config=tts_pb2.SynthesisConfig(voice=voice, sample_rate_hz=16000))


class Stream:
    """A Synthesize stream on its own thread: requests from a queue, every response (or the error) kept."""

    def __init__(self, address: str, voice: str):
        self.channel = grpc.insecure_channel(address)
        self.requests: queue.Queue = queue.Queue()
        self.requests.put(config(voice))
        self.responses: list = []
        self.error: grpc.RpcError | None = None
        self.ended_at: float | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _iterate(self):
        while (request := self.requests.get()) is not None:
            yield request

    def _run(self) -> None:
        try:
            for response in tts_pb2_grpc.TtsServiceStub(self.channel).Synthesize(self._iterate(), timeout=60):
                self.responses.append(response)
        except grpc.RpcError as error:
            self.error = error
        self.ended_at = time.monotonic()

    def say(self, text: str) -> None:
        self.requests.put(tts_pb2.SynthesizeRequest(text=text))

    def end(self) -> None:
        self.requests.put(None)

    def audio_chunks(self) -> int:
        return sum(1 for r in self.responses if r.WhichOneof("event") == "audio")

    def join(self, timeout: float = 60) -> None:
        self.thread.join(timeout)
        self.channel.close()


def one_stream(address: str, voice: str) -> grpc.RpcError | None:
    """Open a stream, ask for one word, half-close; the error, or None when it went through."""
    with grpc.insecure_channel(address) as channel:
        requests = [config(voice), tts_pb2.SynthesizeRequest(text="Hi.")]
        try:
            list(tts_pb2_grpc.TtsServiceStub(channel).Synthesize(iter(requests), timeout=30))
        except grpc.RpcError as error:
            return error
    return None


def wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise TimeoutError("condition not met")


def test_sigterm_drains_not_serving_then_draining_refusal_idle_closed_busy_finishes(service_process):
    proc = service_process("tts", args=["--preload", VOICE, "--grace-s", "30", "--drain-idle-s", "1"])
    idle = Stream(proc.address, VOICE)  # config only, then nothing: idle
    busy = Stream(proc.address, VOICE)
    busy.say("The server is about to drain. ")
    wait_for(busy.audio_chunks)
    proc.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()

    # NOT_SERVING first, on a port that still answers; a new stream hears why it is refused.
    assert wait_for(lambda: health(proc.address) == "NOT_SERVING", timeout=10)
    refused = one_stream(proc.address, VOICE)
    assert refused is not None and refused.code() == grpc.StatusCode.UNAVAILABLE
    assert "draining" in refused.details()
    assert detail_of(refused).reason == "DRAINING"

    # The idle stream is closed early, with a clear status, long before the 30 s grace period.
    idle.join(15)
    assert idle.error is not None and idle.error.code() == grpc.StatusCode.UNAVAILABLE
    assert "draining" in idle.error.details() and "idle" in idle.error.details()
    assert idle.ended_at - signalled < 10

    # The busy stream goes on: a sentence sent during the drain is spoken, and the stream ends normally.
    busy.say("This sentence arrives while the server drains.")
    busy.end()
    busy.join(30)
    assert busy.error is None, busy.error
    spoken = [r.segment_done.text.strip() for r in busy.responses if r.WhichOneof("event") == "segment_done"]
    assert spoken[-1] == "This sentence arrives while the server drains."
    assert busy.responses[-1].WhichOneof("event") == "usage"
    assert proc.proc.wait(20) == 0
    assert time.monotonic() - signalled < 25  # it stopped once the streams ended, not at the grace limit


def test_a_stream_open_past_the_grace_period_is_closed_with_a_clear_status(service_process):
    proc = service_process("tts", args=["--preload", VOICE, "--grace-s", "2", "--drain-idle-s", "60"])
    stream = Stream(proc.address, VOICE)
    stream.say("Hello there. ")
    wait_for(stream.audio_chunks)
    proc.proc.send_signal(signal.SIGTERM)
    stream.join(20)
    assert stream.error is not None and stream.error.code() == grpc.StatusCode.UNAVAILABLE
    assert "grace period" in stream.error.details()
    assert proc.proc.wait(20) == 0


@pytest.fixture
def busy_env(tmp_path) -> dict[str, str]:
    return install_busy(tmp_path)


def test_an_overloaded_service_refuses_the_next_stream_while_the_admitted_one_goes_on(service_process, busy_env):
    proc = service_process("tts", args=["--max-loop-lag-ms", "50"], env=busy_env)
    admitted = Stream(proc.address, BUSY)
    stop = threading.Event()

    def keep_busy() -> None:  # each text blocks the server's loop 0.3 s: it runs late while this goes on
        while not stop.is_set():
            admitted.say("Go. ")
            time.sleep(0.25)

    feeder = threading.Thread(target=keep_busy, daemon=True)
    feeder.start()
    try:
        wait_for(lambda: admitted.audio_chunks() >= 3)
        refused = one_stream(proc.address, BUSY)
        assert refused is not None and refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "overloaded, retry elsewhere" in refused.details()
        assert detail_of(refused).reason == "OVERLOADED" and detail_of(refused).retryable
        before = admitted.audio_chunks()
        wait_for(lambda: admitted.audio_chunks() >= before + 3)  # the admitted stream is still served
    finally:
        stop.set()
        feeder.join()
    admitted.end()
    admitted.join()
    assert admitted.error is None, admitted.error
    assert admitted.responses[-1].WhichOneof("event") == "usage"
    # The load is gone once the admitted stream's work is: a new stream is admitted again.
    assert wait_for(lambda: one_stream(proc.address, BUSY) is None, timeout=15)
