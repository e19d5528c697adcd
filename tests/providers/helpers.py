"""What the provider tests share: the STT double in a child process, a mesh of real services, and the streaming
TTS providers' client side (speak to a double, transcribe back, a refused stream)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.speech import SENTENCES, wer
from tests.tts.helpers import Spoken, check_tags, config, pieces, synthesize, text, transcribe
from voicemesh.mesh import MeshConfig
from voicemesh.process import ServiceProcess, free_port

KEY = "dg-aai-test-key-0123"


class SttDouble:
    """tests/providers/stt_double.py in a child process on a free loopback port."""

    def __init__(self, *args: str):
        self.port = free_port()
        self.base_url = f"ws://127.0.0.1:{self.port}"
        self._proc = subprocess.Popen([sys.executable, "-m", "tests.providers.stt_double", "--port", str(self.port),
                                       "--api-key", KEY, *args], stdout=subprocess.PIPE, text=True)
        line = self._proc.stdout.readline()
        if line.strip() != "READY":
            self.stop()
            raise RuntimeError(f"the STT double did not start: {line!r}")

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(10)


@contextlib.contextmanager
def mesh(folder: Path, services: dict[str, tuple[list[str], dict[str, str]]]) -> Iterator[str]:
    """STT, LLM and TTS services (each with its extra args and environment, e.g. a provider's key and URL
    pointing at a double) and an orchestrator over them; yields the orchestrator's address."""
    procs = {name: ServiceProcess(name, args=["--metrics-port", "-1", *args], env=env, log_path=folder / f"{name}.log")
             for name, (args, env) in services.items()}
    started = []
    try:
        for proc in procs.values():
            started.append(proc.start())
        for proc in procs.values():
            proc.wait_serving()
        MeshConfig({m: {"*": [p.address]} for m, p in procs.items()}).write(folder / "mesh.json")
        orchestrator = ServiceProcess("orchestrator", args=["--metrics-port", "-1", "--mesh", str(folder / "mesh.json"),
                                                            "--max-tokens", "40"], log_path=folder / "orchestrator.log")
        started.append(orchestrator.start())
        yield orchestrator.wait_serving().address
    finally:
        for proc in reversed(started):
            proc.stop()


# The three sentences as the TTS service cuts them: a reply's first piece below sentence level, then sentences.
THREE_PIECES = ["What is the capital", "of France?", *SENTENCES[1:3]]


async def speak_three_sentences(address: str, descriptor: str, base_url: str, key: str) -> Spoken:
    """The first three SENTENCES streamed in pieces to ``descriptor`` at 16 kHz: tags checked, a segment each
    (the first sentence in two: a reply's first piece is cut below sentence level for every voice)."""
    full = " ".join(SENTENCES[:3])
    requests = [config(descriptor, rate=16000, base_url=base_url, api_key=key), *map(text, pieces(full))]
    spoken = check_tags(full, await synthesize(address, requests), 16000)
    assert [s.text for s in spoken.segments] == THREE_PIECES
    return spoken


def check_round_trip(name: str, spoken: Spoken, descriptor: str) -> None:
    """The three sentences transcribe back, and the usage bills their characters to ``descriptor``."""
    # Per sentence (a two-word piece alone is too little audio for whisper to hear right).
    full, pairs = " ".join(SENTENCES[:3]), []
    for sentence in SENTENCES[:3]:
        start = full.index(sentence)
        audio = b"".join(bytes(spoken.audio[s.segment_id]) for s in spoken.segments
                         if start <= s.char_start and s.char_end <= start + len(sentence))
        pairs.append((sentence, transcribe(audio)))
    print(f"\n{name} round trip WER: {wer(pairs):.1%} {pairs}")
    assert wer(pairs) <= 0.10
    # Every character of the sentences: the space between the first one's two pieces too.
    assert spoken.usage.model == descriptor and spoken.usage.characters == sum(map(len, SENTENCES[:3]))


async def speak_with_operator_env(server_address: str, descriptor: str) -> Spoken:
    """One line at the voice's own rate (24 kHz) with no key or URL in the request: the service's environment."""
    line = "The train leaves the station at noon."
    return check_tags(line, await synthesize(server_address, [config(descriptor, rate=0), text(line)]), 24000)


async def refused(service_process, double_class, descriptor: str, double_key: str, fault: str,
                  key: str) -> grpc.aio.AioRpcError:
    """The error of a stream to ``descriptor`` with ``key`` against a double (``double_key``) with ``fault``."""
    double = double_class(api_key=double_key, fault=fault).start()
    try:
        server = service_process("tts")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await synthesize(server.address, [config(descriptor, base_url=double.base_url, api_key=key),
                                              text("Hello there, how are you today?")])
    finally:
        double.stop()
    return caught.value
