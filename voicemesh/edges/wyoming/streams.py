"""The two requests a Wyoming connection makes, each mapped onto one gRPC stream of the mesh.

``Transcription``: ``audio-start/chunk/stop`` (any rate, width and channel
count) go to ``SttService.Recognize`` as 16 kHz PCM while they arrive; its
interims come back as ``transcript-chunk`` and its finals as the ``transcript``.
``Synthesis``: text (one ``synthesize``, or the ``synthesize-chunk`` of a
stream) goes to ``TtsService.Synthesize``; its audio comes back as
``audio-start/chunk/stop`` while it is made.

Either one reports a failed call itself, as a Wyoming ``error``, and then
ignores the rest of its request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from wyoming.asr import TranscriptChunk, TranscriptStart
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event

from voicemesh.audio import StreamResampler, chunks, float_to_pcm
from voicemesh.edges.link import MeshLink
from voicemesh.edges.pcm import check_format, to_float_mono
from voicemesh.errors import InvalidInput
from voicemesh.v1 import stt_pb2, tts_pb2

log = logging.getLogger(__name__)

STT_RATE_HZ = 16000  # what the audio is converted to before it goes to the STT service
Write = Callable[[Event], Awaitable[None]]
_END = None


def rpc_error(exc: grpc.aio.AioRpcError, what: str) -> Error:
    return Error(text=f"{what} failed: {exc.details() or exc.code().name}", code=exc.code().name)


class _Stream:
    """A request stream fed from a queue, and a task that reads the responses."""

    def __init__(self, write: Write):
        self.write = write
        self.failed = False
        self._queue: asyncio.Queue = asyncio.Queue()
        self._reader: asyncio.Task | None = None
        self._call = None

    def _start(self, call, what: str) -> None:
        self._call = call
        self._reader = asyncio.create_task(self._read(what), name=f"wyoming-{what}")

    async def _requests(self, first) -> AsyncIterator:
        yield first
        while (item := await self._queue.get()) is not _END:
            yield item

    async def _read(self, what: str) -> None:
        try:
            async for response in self._call:
                await self.on_response(response)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.CANCELLED:
                self.failed = True
                log.info("%s failed: %s %s", what, exc.code().name, exc.details())
                await self.write(rpc_error(exc, what).event())

    async def on_response(self, response) -> None:
        raise NotImplementedError

    async def _finish(self) -> bool:
        """Half-close the request stream and wait for the responses; False if the call failed."""
        self._queue.put_nowait(_END)
        if self._reader is not None:
            await self._reader
        return not self.failed

    async def cancel(self) -> None:
        if self._call is not None:
            self._call.cancel()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)


class Transcription(_Stream):
    """One ``transcribe``: audio in while it arrives, the text of its utterances out."""

    def __init__(self, link: MeshLink, write: Write, *, model: str, language: str, timeout_s: float):
        super().__init__(write)
        self.model, self.language = model, language
        self.finals: list[str] = []
        self.streamed = ""  # text already sent as transcript-chunk events
        self.started = False
        self._rate: int | None = None
        self._resampler: StreamResampler | None = None
        config = stt_pb2.RecognitionConfig(model=model, language=language, sample_rate_hz=STT_RATE_HZ,
                                           interim_results=True)
        call = link.stub("stt", model).Recognize(self._requests(stt_pb2.RecognizeRequest(config=config)),
                                                 timeout=timeout_s, metadata=link.metadata())
        self._start(call, "transcription")

    def audio(self, chunk: AudioChunk) -> None:
        """Queue one chunk, as 16 kHz PCM s16le mono in pieces of at most 100 ms."""
        rate, width, channels = check_format(chunk.rate, chunk.width, chunk.channels)
        if self._rate is None:
            self._rate, self._resampler = rate, StreamResampler(rate, STT_RATE_HZ)
        elif rate != self._rate:
            raise InvalidInput(f"audio rate changed from {self._rate} to {rate} Hz within one transcription",
                               reason="rate")
        if self.failed:
            return
        self._send(self._resampler.process(to_float_mono(chunk.audio, width, channels)))

    def _send(self, samples) -> None:
        for piece in chunks(float_to_pcm(samples), rate=STT_RATE_HZ, ms=100):
            self._queue.put_nowait(stt_pb2.RecognizeRequest(audio=piece))

    async def finish(self) -> str | None:
        """End the audio; the transcript once every final is in (None if the call failed)."""
        if self._resampler is not None and not self.failed:
            self._send(self._resampler.process(to_float_mono(b"", 2, 1), last=True))
        if not await self._finish():
            return None
        text = " ".join(self.finals)
        await self._stream(text)
        return text

    async def on_response(self, response: stt_pb2.RecognizeResponse) -> None:
        kind = response.WhichOneof("event")
        if kind == "final" and response.final.text.strip():
            self.finals.append(response.final.text.strip())
            await self._stream(" ".join(self.finals))
        elif kind == "interim":
            # Only the stable prefix: later hypotheses keep it, so the chunks add up to the transcript.
            stable = response.interim.stable_text.strip()
            await self._stream(" ".join([*self.finals, stable] if stable else self.finals))

    async def _stream(self, text: str) -> None:
        if not self.started:
            self.started = True
            await self.write(TranscriptStart(language=self.language or None).event())
        if len(text) > len(self.streamed) and text.startswith(self.streamed):
            delta, self.streamed = text[len(self.streamed):], text
            await self.write(TranscriptChunk(text=delta).event())


class Synthesis(_Stream):
    """One synthesis: text in (all at once or in pieces), audio out while it is made."""

    def __init__(self, link: MeshLink, write: Write, *, voice: str, rate: int, timeout_s: float):
        super().__init__(write)
        self.voice, self.rate = voice, rate
        self.audio_started = False
        self.samples = 0
        config = tts_pb2.SynthesisConfig(voice=voice, sample_rate_hz=rate)
        call = link.stub("tts", voice).Synthesize(self._requests(tts_pb2.SynthesizeRequest(config=config)),
                                                  timeout=timeout_s, metadata=link.metadata())
        self._start(call, "synthesis")

    def text(self, text: str) -> None:
        if not self.failed and text:
            self._queue.put_nowait(tts_pb2.SynthesizeRequest(text=text))

    async def finish(self) -> bool:
        """Speak what is left and end the audio; False if the call failed."""
        if not await self._finish():
            return False
        await self._audio_start()
        await self.write(AudioStop().event())
        return True

    async def _audio_start(self) -> None:
        if not self.audio_started:
            self.audio_started = True
            await self.write(AudioStart(rate=self.rate, width=2, channels=1).event())

    async def on_response(self, response: tts_pb2.SynthesizeResponse) -> None:
        if response.WhichOneof("event") == "audio" and response.audio.audio:
            await self._audio_start()
            timestamp = self.samples * 1000 // self.rate
            self.samples += len(response.audio.audio) // 2
            await self.write(AudioChunk(rate=self.rate, width=2, channels=1, audio=response.audio.audio,
                                        timestamp=timestamp).event())
