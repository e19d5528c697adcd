"""``voicemesh serve wyoming`` driven by the wyoming package's own client, over real STT and TTS services."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from wyoming.asr import Transcribe, Transcript, TranscriptChunk
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped, SynthesizeVoice

from tests.speech import speak, word_errors
from voicemesh.edges.wyoming import info as wyoming_info
from voicemesh.edges.wyoming.probe import describe as probe
from voicemesh.mesh import MeshConfig
from voicemesh.process import ServiceProcess
from voicemesh.v1 import common_pb2

pytestmark = pytest.mark.slow

STT = "faster-whisper/tiny.en:en"
TTS = "piper/en_US-joe-medium"
QUESTION = "What is the capital of France?"


def start_wyoming(mesh_path: Path, log_path: Path, *args: str) -> ServiceProcess:
    """``voicemesh serve wyoming`` on a free port, once it answers ``describe``."""
    proc = ServiceProcess("wyoming", args=["--mesh", str(mesh_path), *args], log_path=log_path).start()
    for _ in range(300):
        if probe(proc.address, timeout=2.0) is not None:
            return proc
        if proc.proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.stop()
    pytest.fail(f"the wyoming server did not come up:\n{proc.log_tail()}")


@pytest.fixture(scope="module")
def wyoming(tmp_path_factory) -> Iterator[ServiceProcess]:
    """Real STT and TTS services and a Wyoming server over them."""
    folder = tmp_path_factory.mktemp("wyoming")
    services = {
        "stt": ServiceProcess("stt", args=["--metrics-port", "-1", "--workers", "1", "--threads", "1"],
                              log_path=folder / "stt.log").start(),
        "tts": ServiceProcess("tts", args=["--metrics-port", "-1", "--preload", TTS, "--piper-workers", "1"],
                              log_path=folder / "tts.log").start(),
    }
    server = None
    try:
        for proc in services.values():
            proc.wait_serving()
        MeshConfig({m: {"*": [p.address]} for m, p in services.items()}).write(folder / "mesh.json")
        server = start_wyoming(folder / "mesh.json", folder / "wyoming.log")
        yield server
    finally:
        for proc in [server, *services.values()]:
            if proc is not None:
                proc.stop()


def client(server: ServiceProcess) -> AsyncTcpClient:
    return AsyncTcpClient(server.host, server.port, connect_timeout=10, read_timeout=120)


async def read_until(conn: AsyncTcpClient, *types: str) -> list[Event]:
    """Events up to and including the first of one of ``types``."""
    events = []
    while True:
        event = await conn.read_event()
        assert event is not None, f"the server closed the connection; got {[e.type for e in events]}"
        events.append(event)
        if event.type in types:
            return events


def pcm_format(pcm16: bytes, width: int, channels: int) -> bytes:
    """16-bit mono PCM as ``width``-byte samples on ``channels`` equal channels."""
    samples = np.frombuffer(pcm16, dtype="<i2").astype(np.int64)
    if width == 1:
        data = ((samples >> 8) + 128).astype(np.uint8)
    elif width == 3:
        data = np.frombuffer((samples << 8).astype("<i4").tobytes(), dtype=np.uint8).reshape(-1, 4)[:, :3]
    else:
        data = {2: samples.astype("<i2"), 4: (samples << 16).astype("<i4")}[width]
    return np.tile(data.reshape(len(samples), -1), (1, channels)).tobytes()


async def transcribe(conn: AsyncTcpClient, pcm: bytes, rate: int, width: int = 2, channels: int = 1,
                     name: str | None = STT) -> list[Event]:
    """One transcription of ``pcm`` sent in 1024-frame chunks; the events up to transcript-stop (or error)."""
    await conn.write_event(Transcribe(name=name, language="en").event())
    await conn.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
    frame = width * channels
    for start in range(0, len(pcm), 1024 * frame):
        await conn.write_event(AudioChunk(rate=rate, width=width, channels=channels,
                                          audio=pcm[start:start + 1024 * frame]).event())
    await conn.write_event(AudioStop().event())
    return await read_until(conn, "transcript-stop", "error")


async def synthesized(conn: AsyncTcpClient) -> tuple[bytes, int, list[Event]]:
    """The audio of one synthesis: (PCM, rate, events up to audio-stop)."""
    events = await read_until(conn, "audio-stop", "error")
    assert events[-1].type == "audio-stop", events[-1]
    starts = [AudioStart.from_event(e) for e in events if AudioStart.is_type(e.type)]
    assert len(starts) == 1 and (starts[0].width, starts[0].channels) == (2, 1)
    audio = b"".join(AudioChunk.from_event(e).audio for e in events if AudioChunk.is_type(e.type))
    return audio, starts[0].rate, events


async def test_describe_lists_the_mesh_models_and_voices(wyoming):
    async with client(wyoming) as conn:
        await conn.write_event(Describe().event())
        (event,) = await read_until(conn, "info")
    info = Info.from_event(event)
    (asr,) = info.asr
    (tts,) = info.tts
    assert asr.supports_transcript_streaming and tts.supports_synthesize_streaming
    assert {m.name: m.languages for m in asr.models}[STT] == ["en"]
    voices = {v.name: v for v in tts.voices}
    assert voices[TTS].languages == ["en-US"] and voices[TTS].speakers is None


def test_a_voice_with_speakers_lists_them():
    many = common_pb2.ModelInfo(descriptor="piper/en_US-libritts-high", provider="piper", model="en_US-libritts-high",
                                languages=["en_US"], voices=["p225", "p226"])
    one = common_pb2.ModelInfo(descriptor=TTS, provider="piper", model="en_US-joe-medium", voices=["en_US-joe-medium"])
    voices = wyoming_info.tts_program([many, one]).voices
    assert [s.name for s in voices[0].speakers] == ["p225", "p226"] and voices[1].speakers is None


@pytest.mark.parametrize(("rate", "width", "channels"), [(16000, 2, 1), (22050, 2, 1), (44100, 3, 2)])
async def test_a_spoken_question_is_transcribed(wyoming, rate, width, channels):
    pcm = pcm_format(speak(QUESTION, rate) + bytes(2 * rate // 2), width, channels)
    async with client(wyoming) as conn:
        events = await transcribe(conn, pcm, rate, width, channels)
    types = [e.type for e in events]
    assert types[0] == "transcript-start" and types[-2:] == ["transcript", "transcript-stop"], types
    text = Transcript.from_event(events[-2]).text
    errors, count = word_errors(QUESTION, text)
    assert errors <= 1, text
    # The chunks are the transcript, piece by piece.
    assert "".join(TranscriptChunk.from_event(e).text for e in events if e.type == "transcript-chunk") == text


async def test_synthesize_gives_audio_that_transcribes_back(wyoming):
    sentence = "The weather is nice today."
    async with client(wyoming) as conn:
        await conn.write_event(Synthesize(text=sentence, voice=SynthesizeVoice(name=TTS)).event())
        audio, rate, _ = await synthesized(conn)
        assert rate == 22050 and len(audio) > rate  # over half a second of speech
        events = await transcribe(conn, audio, rate)
    errors, _ = word_errors(sentence, Transcript.from_event(events[-2]).text)
    assert errors <= 1, Transcript.from_event(events[-2]).text


async def test_streaming_synthesis_speaks_while_the_text_arrives(wyoming):
    first, rest = "Hello from the mesh. ", ["How are ", "you ", "today?"]
    async with client(wyoming) as conn:
        await conn.write_event(SynthesizeStart(voice=SynthesizeVoice(name=TTS)).event())
        await conn.write_event(SynthesizeChunk(text=first).event())
        await conn.write_event(SynthesizeChunk(text="It ").event())
        # The first sentence is spoken before the stream ends.
        early = await read_until(conn, "audio-chunk")
        assert [e.type for e in early] == ["audio-start", "audio-chunk"]
        for piece in rest:
            await conn.write_event(SynthesizeChunk(text=piece).event())
        # The whole text again, as the protocol asks of streaming clients: not spoken twice.
        await conn.write_event(Synthesize(text=first + "It " + "".join(rest)).event())
        await conn.write_event(SynthesizeStop().event())
        later = await read_until(conn, "audio-stop")
        stopped = await conn.read_event()
        assert stopped is not None and SynthesizeStopped.is_type(stopped.type)
        audio = b"".join(AudioChunk.from_event(e).audio for e in early + later if AudioChunk.is_type(e.type))
        assert not any(e.type == "audio-start" for e in later)
        events = await transcribe(conn, audio, 22050)
    text = Transcript.from_event(events[-2]).text
    errors, count = word_errors("Hello from the mesh. It How are you today?", text)
    assert errors <= 2 and count == 9, text


async def test_bad_events_get_an_error_and_the_server_keeps_serving(wyoming):
    async with client(wyoming) as conn:
        bad = [
            AudioChunk(rate=16000, width=2, channels=1, audio=bytes(320)).event(),  # no audio-start
            AudioStart(rate=16000, width=7, channels=1).event(),  # no such sample width
            Event(type="synthesize", data={"voice": {"name": TTS}}),  # no text
            Synthesize(text="Hello.", voice=SynthesizeVoice(name="piper/no-such-voice")).event(),
        ]
        errors = []
        for event in bad:
            await conn.write_event(event)
            (*_, error) = await read_until(conn, "error")
            errors.append(Error.from_event(error))
        assert [e.code for e in errors] == ["INVALID_ARGUMENT", "INVALID_ARGUMENT", "INVALID_ARGUMENT", "NOT_FOUND"]
        assert "audio-start" in errors[0].text and "width" in errors[1].text and "no-such-voice" in errors[3].text
        # An unknown model fails the transcription with an error, not a transcript.
        events = await transcribe(conn, speak(QUESTION, 16000), 16000, name="faster-whisper/no-such-model")
        assert events[-1].type == "error" and "no-such-model" in Error.from_event(events[-1]).text
        # The same connection still serves.
        events = await transcribe(conn, speak(QUESTION, 16000) + bytes(16000), 16000)
        assert word_errors(QUESTION, Transcript.from_event(events[-2]).text)[0] <= 1
    # And so does a new one.
    async with client(wyoming) as conn:
        await conn.write_event(Synthesize(text="Hello.").event())
        audio, _, _ = await synthesized(conn)
        assert audio


async def test_an_event_announcing_a_huge_payload_is_refused_before_it_is_read(wyoming):
    import asyncio
    import json

    from voicemesh.edges.wyoming.handler import MAX_EVENT_BYTES

    reader, writer = await asyncio.open_connection(wyoming.host, wyoming.port)
    try:
        header = {"type": "audio-chunk", "data": {"rate": 16000, "width": 2, "channels": 1},
                  "payload_length": 4 << 30}  # 4 GiB the server would otherwise wait for and hold
        writer.write(json.dumps(header).encode() + b"\n" + bytes(1024))
        await writer.drain()
        error = json.loads(await asyncio.wait_for(reader.readline(), 10))
        assert error["type"] == "error", error
        body = error.get("data") or json.loads(await reader.readexactly(error["data_length"]))
        assert body["code"] == "PAYLOAD_TOO_LARGE" and str(MAX_EVENT_BYTES) in body["text"], body
        assert await asyncio.wait_for(reader.read(), 10) == b""  # and the connection is closed
    finally:
        writer.close()
    async with client(wyoming) as conn:  # the server serves the next client
        await conn.write_event(Synthesize(text="Hello.").event())
        audio, _, _ = await synthesized(conn)
        assert audio


def test_the_docs_wyoming_example_runs(wyoming, tmp_path):
    root = Path(__file__).resolve().parents[2]
    (code,) = re.findall(r"```python wyoming\n(.*?)```", (root / "docs" / "clients.md").read_text(), flags=re.S)
    code = code.replace('"voicemesh/samples/', f'"{root}/voicemesh/samples/')
    code = code.replace('AsyncTcpClient("127.0.0.1", 10300)', f'AsyncTcpClient("{wyoming.host}", {wyoming.port})')
    (tmp_path / "example.py").write_text(code)
    result = subprocess.run([sys.executable, str(tmp_path / "example.py")], capture_output=True, text=True,
                            timeout=180, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "transcript: What is the capital of France?" in result.stdout
    assert float(re.search(r"spoken: ([\d.]+) s", result.stdout).group(1)) > 1.0


async def test_zeroconf_announces_the_server_for_home_assistant(tmp_path):
    from zeroconf import IPVersion
    from zeroconf.asyncio import AsyncZeroconf

    name = f"voicemesh-test-{uuid.uuid4().hex[:8]}"
    mesh = tmp_path / "mesh.json"
    mesh.write_text("{}")
    server = start_wyoming(mesh, tmp_path / "announced.log", "--zeroconf", name)
    browser = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)  # loopback only
    try:
        found = await browser.async_get_service_info("_wyoming._tcp.local.", f"{name}._wyoming._tcp.local.",
                                                     timeout=5000)
    finally:
        await browser.async_close()
        server.stop()
    assert found is not None and found.port == server.port
    assert found.parsed_addresses() == ["127.0.0.1"]
