"""The gRPC face of the TTS service: protobuf in and out, nothing else.

``Synthesize`` validates the config, resolves the voice to a loaded backend
and hands plain inputs to ``SynthesisStream``, translating its events back
into ``SynthesizeResponse`` messages.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc

from voicemesh.audio import check_sample_rate
from voicemesh.descriptors import parse
from voicemesh.errors import InvalidInput
from voicemesh.runtime.auth import meter, record_unsent
from voicemesh.runtime.streams import read_config, reject_second_config
from voicemesh.services.tts.backend import MAX_SPEED, MIN_SPEED, TtsBackend, VoiceOptions
from voicemesh.services.tts.stream import (
    Cancelled,
    Chunk,
    Control,
    Event,
    Finished,
    SegmentFinished,
    StreamLimits,
    SynthesisStream,
)
from voicemesh.v1 import common_pb2, tts_pb2

if TYPE_CHECKING:
    from voicemesh.runtime.service import ModelService


class TtsServicer:
    """Implements ``voicemesh.v1.TtsService``."""

    def __init__(self, service: ModelService):
        self.service = service

    async def Describe(
        self, request: tts_pb2.TtsServiceDescribeRequest, context: grpc.aio.ServicerContext
    ) -> tts_pb2.TtsServiceDescribeResponse:
        return tts_pb2.TtsServiceDescribeResponse(description=self.service.description())

    async def Synthesize(
        self, requests: AsyncIterator[tts_pb2.SynthesizeRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[tts_pb2.SynthesizeResponse]:
        config = await read_config(requests)
        descriptor = parse(config.voice)
        if config.sample_rate_hz:
            check_sample_rate(config.sample_rate_hz)
        speed = config.speed or 1.0
        if not MIN_SPEED <= speed <= MAX_SPEED:  # also refuses NaN
            raise InvalidInput(f"speed must be between {MIN_SPEED} and {MAX_SPEED} (0 means 1.0), got {speed:g}")
        backend = await self.service.backend(config.voice, config.backend if config.HasField("backend") else None)
        if not isinstance(backend, TtsBackend):
            raise InvalidInput(f"{descriptor.provider!r} is not a text-to-speech provider")
        voice = backend.check_voice(descriptor.variant or "")
        rate = config.sample_rate_hz or backend.native_rate(voice)
        settings = self.service.settings
        limits = StreamLimits(
            chunk_ms=settings.chunk_ms,
            max_pending_chars=settings.max_pending_chars,
            max_segment_chars=settings.max_segment_chars,
            first_clause_min_chars=settings.first_clause_min_chars,
            first_words=settings.first_words,
        )
        stream = SynthesisStream(backend, VoiceOptions(voice=voice, speed=speed, sample_rate_hz=rate), limits)
        model = str(descriptor)
        sent_samples, usage_sent, segments = 0, False, set()
        try:
            # Closed here, not by the garbage collector: its request reader lets go of the stream before the
            # status goes out (else a quota's RESOURCE_EXHAUSTED became UNKNOWN, "generator already running").
            async with contextlib.aclosing(stream.run(_inputs(requests, settings.max_piece_chars))) as events:
                async for event in events:
                    if isinstance(event, Chunk):
                        # Metered as sent: a quota stops the stream within one chunk; usage is written as it grows.
                        sent_samples += len(event.audio) // 2
                        meter(model, audio_seconds_out=len(event.audio) / 2 / rate)
                        if event.segment.index not in segments:
                            segments.add(event.segment.index)
                            meter(model, characters=event.segment.billed)
                    usage_sent = usage_sent or isinstance(event, Finished)
                    yield _response(event, rate, model)
        finally:
            if not usage_sent and (sent_samples or stream.characters):
                # Cancelled, cut or failed before its Usage: what was synthesized is still metered.
                record_unsent(common_pb2.Usage(characters=stream.characters, audio_seconds_out=sent_samples / rate,
                                               model=model))


async def _inputs(requests: AsyncIterator[tts_pb2.SynthesizeRequest], max_piece_chars: int) -> AsyncIterator:
    async for request in requests:
        kind = request.WhichOneof("request")
        reject_second_config(kind)
        if kind == "text":
            if "\x00" in request.text:
                raise InvalidInput("text contains a NUL character (U+0000), which cannot be spoken")
            if len(request.text) > max_piece_chars:
                raise InvalidInput(
                    f"text piece of {len(request.text)} characters is beyond the size limit of {max_piece_chars}; "
                    "send text in smaller pieces"
                )
            yield request.text
        elif kind == "flush":
            yield Control.FLUSH
        elif kind == "cancel":
            yield Control.CANCEL


def _response(event: Event, rate: int, model: str) -> tts_pb2.SynthesizeResponse:
    if isinstance(event, Chunk):
        segment = event.segment
        return tts_pb2.SynthesizeResponse(
            audio=tts_pb2.AudioChunk(
                audio=event.audio,
                segment_id=segment.index,
                char_start=segment.char_start,
                char_end=segment.char_end,
                offset_samples=event.offset,
                segment_offset_samples=event.segment_offset,
                sample_rate_hz=rate,
            )
        )
    if isinstance(event, SegmentFinished):
        segment = event.segment
        return tts_pb2.SynthesizeResponse(
            segment_done=tts_pb2.SegmentDone(
                segment_id=segment.index,
                text=segment.text,
                char_start=segment.char_start,
                char_end=segment.char_end,
                samples=event.samples,
                words=[tts_pb2.WordSpan(word=w.word, char_start=w.char_start, char_end=w.char_end,
                                        start_samples=w.start_samples, end_samples=w.end_samples)
                       for w in event.words],
            )
        )
    if isinstance(event, Cancelled):
        return tts_pb2.SynthesizeResponse(cancelled=tts_pb2.SynthesisCancelled(dropped_characters=event.dropped_characters))
    if isinstance(event, Finished):
        return tts_pb2.SynthesizeResponse(
            usage=common_pb2.Usage(characters=event.characters, audio_seconds_out=event.samples / rate, model=model)
        )
    raise TypeError(f"unknown synthesis event {event!r}")
