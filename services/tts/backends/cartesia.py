"""Cartesia's streaming speech over its TTS WebSocket (``cartesia/<model>:<voice-id>``).

One socket per Synthesize stream (``wss://api.cartesia.ai/tts/websocket``,
``X-API-Key`` and ``Cartesia-Version`` headers) and one ``context_id`` per
reply. Each segment goes out as a continuation of that context
(``continue: true``) followed by a manual flush (an empty transcript with
``flush: true``), so the voice carries on across segments while the audio of
each segment stays apart: its ``chunk`` messages carry the segment's
``flush_id`` and ``flush_done`` ends it. ``add_timestamps`` asks for word
timestamps, which the session keeps per segment (``words``) and the stream
turns into the segment's word spans. A barge-in sends
``{"context_id": ..., "cancel": true}``; anything the cancelled context still
sends is dropped by its ``context_id``, and the next segment opens a new context.
"""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from voicemesh.backend import BackendSettings, ModelCard
from voicemesh.services.tts.backend import TTS_CAPABILITIES, VoiceOptions, WordTime
from voicemesh.services.tts.backends.websocket import WebSocketSession, WebSocketTtsBackend, resample, whole_samples

log = logging.getLogger(__name__)

API_VERSION = "2025-04-16"
RATES = (8000, 16000, 22050, 24000, 44100, 48000)  # raw pcm_s16le rates Cartesia documents
DEFAULT_RATE = 24000
DEFAULT_VOICE = "9626c31c-bec5-4cca-baa8-f8ba9e84c8bc"  # the voice of the LiveKit Inference example
CAPABILITIES = {**TTS_CAPABILITIES, "word_times": True}
MODELS = ("sonic-2", "sonic-3", "sonic-turbo")


class CartesiaTtsBackend(WebSocketTtsBackend):
    """Speech from Cartesia's ``/tts/websocket`` (any model the account serves)."""

    provider = "cartesia"
    default_base_url = "https://api.cartesia.ai"
    key_env = ("CARTESIA_API_KEY",)

    @classmethod
    def catalog(cls, settings: BackendSettings) -> list[ModelCard]:
        return [
            ModelCard(descriptor=f"cartesia/{model}", sample_rates_hz=RATES, capabilities=CAPABILITIES,
                      description="Cartesia WebSocket TTS: one context per reply, word timestamps; voice = voice id")
            for model in MODELS
        ]

    def native_rate(self, voice: str) -> int:
        return DEFAULT_RATE

    def check_voice(self, voice: str) -> str:
        return voice or self.options.extra.get("voice", "") or DEFAULT_VOICE

    def open_session(self, options: VoiceOptions) -> CartesiaSession:
        rate = options.sample_rate_hz if options.sample_rate_hz in RATES else DEFAULT_RATE
        return CartesiaSession(self, options, rate)


class CartesiaSession(WebSocketSession):
    """One stream's socket; one context per reply, one flush per segment."""

    backend: CartesiaTtsBackend

    def __init__(self, backend: CartesiaTtsBackend, options: VoiceOptions, provider_rate: int):
        super().__init__(backend, options, provider_rate)
        self.context_id = ""
        self.flush_id = 0  # flushes sent on the context: segment n's audio carries flush_id n
        self.context_s = 0.0  # audio of the context's earlier segments, in seconds

    def _request(self, transcript: str, **more: Any) -> dict[str, Any]:
        backend = self.backend
        request = {
            "model_id": backend.model,
            "transcript": transcript,
            "voice": {"mode": "id", "id": self.options.voice},
            "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": self.provider_rate},
            "language": backend.options.extra.get("language", "en"),
            "context_id": self.context_id,
            "continue": True,
            "add_timestamps": True,
        }
        if self.options.speed and self.options.speed != 1.0:
            request["speed"] = self.options.speed
        request.update(more)
        return request

    async def speak(self, text: str) -> AsyncIterator[bytes]:
        backend = self.backend
        headers = {"X-API-Key": backend.require_key(), "Cartesia-Version": API_VERSION}
        if await self.open(backend.ws_url("/tts/websocket"), headers) or not self.context_id:
            self.context_id, self.flush_id, self.context_s = uuid.uuid4().hex, 0, 0.0
        # Cartesia joins a context's transcripts as sent: a continuation carries its own leading space, or the
        # words at the seam run together ("France" + "is Paris." is spoken "Franceis Paris").
        await self.send(self._request(text if self.flush_id == 0 else " " + text))
        await self.send(self._request("", flush=True))
        self.flush_id += 1
        self.words = []
        resampler, carry, received = self.resampler(), b"", 0
        while True:
            message = backend.parse(await self.recv())
            if message.get("context_id") not in (self.context_id, None):
                continue  # a cancelled context's last words
            kind = message.get("type")
            if kind == "error":
                raise backend.frame_error(_int(message.get("status_code")),
                                          str(message.get("message") or message.get("error") or message.get("title")))
            flush_id = message.get("flush_id")
            if flush_id is not None and flush_id != self.flush_id:
                continue  # not this segment's flush: nothing of ours (each segment waits for its flush_done)
            if kind == "chunk":
                pcm, carry = whole_samples(carry + _audio(backend, message))
                received += len(pcm) // 2
                if out := resample(resampler, pcm):
                    yield out
            elif kind == "timestamps":
                self.words.extend(_words(backend, message.get("word_timestamps")))
            elif kind in ("flush_done", "done"):
                self._segment_times(received / self.provider_rate)
                if kind == "done":
                    self.context_id = ""  # the provider ended the context: the next segment needs a new one
                if tail := resample(resampler, b"", last=True):
                    yield tail
                return
            else:
                raise backend.malformed(f"unknown message type {kind!r}")

    def _segment_times(self, seconds: float) -> None:
        """Word times from the segment's start, whether Cartesia counted them from it or from the context's."""
        if self.words and self.context_s and self.words[-1].end_s > seconds + 0.5:
            self.words = [WordTime(w.word, w.start_s - self.context_s, w.end_s - self.context_s) for w in self.words]
        self.context_s += seconds

    async def cancel(self) -> None:
        if self.ws is not None and self.context_id:
            await self.send({"context_id": self.context_id, "cancel": True})
            log.debug("cancelled Cartesia context %s", self.context_id)
        self.context_id = ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _audio(backend: CartesiaTtsBackend, message: dict[str, Any]) -> bytes:
    data = message.get("data")
    if not isinstance(data, str):
        raise backend.malformed("a chunk without base64 data")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise backend.malformed("a chunk whose data is not base64") from None


def _words(backend: CartesiaTtsBackend, stamps: Any) -> list[WordTime]:
    try:
        return [WordTime(str(w), float(s), float(e))
                for w, s, e in zip(stamps["words"], stamps["start"], stamps["end"], strict=True)]
    except (TypeError, KeyError, ValueError):
        raise backend.malformed("word_timestamps without matching words, start and end") from None
