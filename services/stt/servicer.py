"""The gRPC face of the stt service: config validation and event translation.

The servicer is the only part of the service that knows protobuf; backends
take ``RecognitionOptions`` and validated PCM chunks and yield the typed
events of ``voicemesh.services.stt.backend``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import grpc

from voicemesh.audio import check_pcm, check_sample_rate
from voicemesh.descriptors import parse
from voicemesh.errors import InvalidInput
from voicemesh.runtime.auth import meter, record_unsent
from voicemesh.runtime.service import ModelService
from voicemesh.runtime.streams import read_config, reject_second_config
from voicemesh.services.stt.backend import (
    DEFAULT_MIN_SILENCE_MS,
    DEFAULT_SPEECH_THRESHOLD,
    RecognitionOptions,
    SpeechEndedEvent,
    SpeechStartedEvent,
    SttBackend,
    SttEvent,
    TranscriptEvent,
    UsageEvent,
)
from voicemesh.v1 import common_pb2, stt_pb2

log = logging.getLogger(__name__)

MAX_CHUNK_SECONDS = 1.0
MAX_MIN_SILENCE_MS = 60000  # as long as the orchestrator's longest endpointing delay


def recognition_options(config: stt_pb2.RecognitionConfig, backend: SttBackend) -> RecognitionOptions:
    """Validate a RecognitionConfig against ``backend`` and return it as plain values."""
    rate = check_sample_rate(config.sample_rate_hz)
    endpointing = config.endpointing
    silence = endpointing.min_silence_ms or DEFAULT_MIN_SILENCE_MS
    if not 0 < silence <= MAX_MIN_SILENCE_MS:
        raise InvalidInput(f"endpointing.min_silence_ms must be 0 (default {DEFAULT_MIN_SILENCE_MS}) or "
                           f"1..{MAX_MIN_SILENCE_MS}, got {endpointing.min_silence_ms}")
    threshold = endpointing.speech_threshold or DEFAULT_SPEECH_THRESHOLD
    if not 0.0 < threshold < 1.0:
        raise InvalidInput(f"endpointing.speech_threshold must be between 0 and 1, got {threshold}")
    language = config.language or parse(config.model).variant or ""
    if backend.languages and not language:
        language = backend.languages[0]
    if backend.languages and language not in backend.languages:
        raise InvalidInput(f"model {config.model!r} does not handle language {language!r}; "
                           f"it handles: {', '.join(backend.languages)}")
    return RecognitionOptions(language=language, sample_rate_hz=rate, interim_results=config.interim_results,
                              min_silence_ms=silence, speech_threshold=threshold)


async def audio_chunks(requests: AsyncIterator[stt_pb2.RecognizeRequest], rate: int,
                       received: list[int] | None = None, model: str = "") -> AsyncIterator[bytes]:
    """The audio of the messages after the config, each chunk validated; ``received[0]`` counts the samples,
    and with ``model`` each chunk is metered as it arrives (a quota stops the stream within one chunk)."""
    async for request in requests:
        kind = request.WhichOneof("request")
        if kind != "audio":
            reject_second_config(kind)
        chunk = check_pcm(request.audio, rate=rate, max_seconds=MAX_CHUNK_SECONDS)
        if received is not None:
            received[0] += len(chunk) // 2
        if model:
            meter(model, audio_seconds_in=len(chunk) / 2 / rate)
        yield chunk


def to_response(event: SttEvent) -> stt_pb2.RecognizeResponse:
    """One backend event as its protobuf message."""
    if isinstance(event, TranscriptEvent):
        transcript = stt_pb2.Transcript(
            utterance_id=event.utterance_id, text=event.text, stable_text=event.stable_text,
            words=[stt_pb2.Word(word=w.word, start_ms=w.start_ms, end_ms=w.end_ms, confidence=w.confidence)
                   for w in event.words],
            confidence=event.confidence, language=event.language, start_ms=event.start_ms, end_ms=event.end_ms,
            end_candidate=event.end_candidate,
        )
        if event.final:
            return stt_pb2.RecognizeResponse(final=transcript)
        return stt_pb2.RecognizeResponse(interim=transcript)
    if isinstance(event, SpeechStartedEvent):
        return stt_pb2.RecognizeResponse(
            speech_started=stt_pb2.SpeechStarted(utterance_id=event.utterance_id, time_ms=event.time_ms))
    if isinstance(event, SpeechEndedEvent):
        return stt_pb2.RecognizeResponse(
            speech_ended=stt_pb2.SpeechEnded(utterance_id=event.utterance_id, time_ms=event.time_ms))
    if isinstance(event, UsageEvent):
        return stt_pb2.RecognizeResponse(
            usage=common_pb2.Usage(audio_seconds_in=event.audio_seconds_in, model=event.model))
    raise TypeError(f"unknown stt event {event!r}")


class SttServicer:
    """``voicemesh.v1.SttService``."""

    def __init__(self, service: ModelService):
        self.service = service

    async def Describe(self, request: stt_pb2.SttServiceDescribeRequest,
                       context: grpc.aio.ServicerContext) -> stt_pb2.SttServiceDescribeResponse:
        return stt_pb2.SttServiceDescribeResponse(description=self.service.description())

    async def Recognize(self, requests: AsyncIterator[stt_pb2.RecognizeRequest],
                        context: grpc.aio.ServicerContext) -> AsyncIterator[stt_pb2.RecognizeResponse]:
        config = await read_config(requests)
        check_sample_rate(config.sample_rate_hz)
        backend = await self.service.backend(config.model, config.backend if config.HasField("backend") else None)
        if not isinstance(backend, SttBackend):
            raise InvalidInput(f"{config.model!r} is not a speech-to-text model")
        options = recognition_options(config, backend)
        log.info("recognize %s at %d Hz (interim %s, min silence %d ms)", config.model, options.sample_rate_hz,
                 options.interim_results, options.min_silence_ms)
        received, usage_sent = [0], False
        descriptor = parse(config.model)
        model = f"{descriptor.provider}/{descriptor.model}:{options.language}"
        audio = audio_chunks(requests, options.sample_rate_hz, received, model)
        try:
            async with contextlib.aclosing(backend.recognize(options, audio)) as events:
                async for event in events:
                    usage_sent = usage_sent or isinstance(event, UsageEvent)
                    yield to_response(event)
        finally:
            if not usage_sent and received[0]:
                # The client left (or the stream failed) before USAGE: the audio it sent is still metered.
                record_unsent(common_pb2.Usage(audio_seconds_in=received[0] / options.sample_rate_hz, model=model))
