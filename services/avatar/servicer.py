"""The gRPC face of the avatar service: protobuf in and out, nothing else.

``Render`` validates the config, resolves the avatar to a backend, opens an
animator and an encoder for the stream and hands plain inputs to
``RenderStream``, translating its events back into ``RenderResponse``
messages. ``Describe`` adds each avatar's sizes, frame rates and encodings to
the common service description.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc

from voicemesh.audio import check_pcm, check_sample_rate, pcm_to_float
from voicemesh.descriptors import parse
from voicemesh.errors import InvalidInput
from voicemesh.runtime.streams import read_config, reject_second_config
from voicemesh.services.avatar.backend import (
    MAX_FPS,
    MAX_SIZE,
    MIN_FPS,
    MIN_SIZE,
    AvatarBackend,
    AvatarCard,
    RenderOptions,
)
from voicemesh.services.avatar.encoding import LISTED, RAW, FrameEncoder, check_encoding
from voicemesh.services.avatar.stream import (
    AudioPiece,
    Control,
    Event,
    Finished,
    Frame,
    PhonemePiece,
    PlaybackFinished,
    RenderStream,
    StreamLimits,
)
from voicemesh.v1 import avatar_pb2, common_pb2

if TYPE_CHECKING:
    from voicemesh.runtime.service import ModelService

log = logging.getLogger(__name__)
DEFAULT_RATE = 16000


class AvatarServicer:
    """Implements ``voicemesh.v1.AvatarService``."""

    def __init__(self, service: ModelService):
        self.service = service

    async def Describe(
        self, request: avatar_pb2.AvatarServiceDescribeRequest, context: grpc.aio.ServicerContext
    ) -> avatar_pb2.AvatarServiceDescribeResponse:
        return avatar_pb2.AvatarServiceDescribeResponse(
            description=self.service.description(), avatars=[_avatar_info(card) for card in self._cards()]
        )

    def _cards(self) -> list[AvatarCard]:
        cards: list[AvatarCard] = []
        for provider in self.service.registry.providers():
            try:
                cls = self.service.registry.backend_class(provider)
                if issubclass(cls, AvatarBackend):
                    cards.extend(cls.avatars(self.service.settings))
            except Exception as exc:  # a broken plugin must not hide the others
                log.warning("avatar provider %s cannot list its avatars: %s", provider, exc)
        return cards

    async def Render(
        self, requests: AsyncIterator[avatar_pb2.RenderRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[avatar_pb2.RenderResponse]:
        config = await read_config(requests)
        descriptor = parse(config.avatar)
        width, height = config.size.width, config.size.height
        for name, value in (("width", width), ("height", height)):
            if not MIN_SIZE <= value <= MAX_SIZE or value % 2:
                raise InvalidInput(f"size.{name} must be an even number of pixels between {MIN_SIZE} and "
                                   f"{MAX_SIZE}, got {value}")
        if not MIN_FPS <= config.fps <= MAX_FPS:
            raise InvalidInput(f"fps must be between {MIN_FPS} and {MAX_FPS}, got {config.fps}")
        rate = check_sample_rate(config.sample_rate_hz) if config.sample_rate_hz else DEFAULT_RATE
        encoding = check_encoding(config.encoding)
        raw_bytes = width * height * (3 if encoding == "rgb24" else 3 / 2) if encoding in RAW else 0
        if raw_bytes > self.service.settings.max_message_bytes - 1024:
            raise InvalidInput(f"a {width}x{height} {encoding} frame is {raw_bytes:.0f} bytes, beyond this server's "
                               f"message limit of {self.service.settings.max_message_bytes}; use jpeg or a codec "
                               "such as h264, or a smaller size")
        backend = await self.service.backend(config.avatar, config.backend if config.HasField("backend") else None)
        if not isinstance(backend, AvatarBackend):
            raise InvalidInput(f"{descriptor.provider!r} is not an avatar provider")
        variant = backend.check_variant(descriptor.variant or "")
        options = RenderOptions(variant=variant, width=width, height=height, fps=config.fps, sample_rate_hz=rate)
        # Drawing a face's still layers and opening a codec take milliseconds to seconds (by size): off the loop.
        encoder = await asyncio.to_thread(FrameEncoder, encoding, width=width, height=height, fps=config.fps)
        animator = await asyncio.to_thread(backend.open, options)
        settings = self.service.settings
        limits = StreamLimits(max_pending_s=settings.max_pending_s, max_gap_s=settings.max_gap_s)
        stream = RenderStream(animator, encoder, options, paced=not config.unpaced, limits=limits)
        model = str(descriptor)
        async with contextlib.aclosing(stream.run(_inputs(requests, rate))) as events:  # closed here, not by the GC
            async for event in events:
                yield _response(event, options, model)


async def _inputs(requests: AsyncIterator[avatar_pb2.RenderRequest], rate: int) -> AsyncIterator:
    async for request in requests:
        kind = request.WhichOneof("request")
        reject_second_config(kind)
        if kind == "audio":
            if request.audio.offset_samples < 0:
                raise InvalidInput(f"audio offset_samples must not be negative, got {request.audio.offset_samples}")
            pcm = check_pcm(request.audio.audio, rate=rate)
            yield AudioPiece(samples=pcm_to_float(pcm), offset=request.audio.offset_samples)
        elif kind == "phoneme":
            phoneme = request.phoneme
            if not 0 <= phoneme.start_samples < phoneme.end_samples:
                raise InvalidInput(f"phoneme {phoneme.phoneme!r} needs 0 <= start_samples < end_samples, got "
                                   f"{phoneme.start_samples}..{phoneme.end_samples}")
            yield PhonemePiece(phoneme=phoneme.phoneme, start=phoneme.start_samples, end=phoneme.end_samples)
        elif kind == "text":
            continue  # the local faces lip-sync from audio and phonemes; text is for backends that use it
        elif kind == "reply_end":
            yield Control.REPLY_END
        elif kind == "clear":
            yield Control.CLEAR


def _response(event: Event, options: RenderOptions, model: str) -> avatar_pb2.RenderResponse:
    if isinstance(event, Frame):
        return avatar_pb2.RenderResponse(frame=avatar_pb2.VideoFrame(
            index=event.index, pts_samples=event.pts, audio_offset_samples=event.audio_offset, idle=event.idle,
            data=event.data, keyframe=event.keyframe, width=options.width, height=options.height,
            mouth_open=event.mouth_open,
        ))
    if isinstance(event, PlaybackFinished):
        return avatar_pb2.RenderResponse(playback_finished=avatar_pb2.PlaybackFinished(
            audio_offset_samples=event.audio_offset, pts_samples=event.pts, interrupted=event.interrupted,
        ))
    if isinstance(event, Finished):
        return avatar_pb2.RenderResponse(usage=common_pb2.Usage(
            audio_seconds_in=event.audio_samples / options.sample_rate_hz,
            video_seconds_out=event.frames / options.fps, model=model,
        ))
    raise TypeError(f"unknown render event {event!r}")


def _avatar_info(card: AvatarCard) -> avatar_pb2.AvatarInfo:
    return avatar_pb2.AvatarInfo(
        descriptor=card.descriptor, variants=card.variants,
        sizes=[avatar_pb2.VideoSize(width=w, height=h) for w, h in card.sizes],
        min_size=MIN_SIZE, max_size=MAX_SIZE, min_fps=MIN_FPS, max_fps=MAX_FPS, default_fps=card.default_fps,
        encodings=LISTED, description=card.description,
    )
