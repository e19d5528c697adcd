"""ElevenLabs' streaming speech over its stream-input WebSocket (``elevenlabs/<model>:<voice-id>``).

One socket per reply: ``wss://api.elevenlabs.io/v1/text-to-speech/{voice_id}/stream-input``
with ``model_id`` and ``output_format=pcm_<rate>`` in the query and the key in
``xi-api-key``. The first message is ``{"text": " "}`` with the voice settings;
each segment follows as ``{"text": ..., "try_trigger_generation": true,
"flush": true}``, and ``{"text": ""}`` ends the input. Audio comes back as
base64 ``audio`` with the ``alignment`` of the characters it speaks: a segment
is over once its characters have all been aligned, so one socket carries the
whole reply. A barge-in closes the socket (ElevenLabs has no cancel message);
the next segment opens a new one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from voicemesh.backend import BackendSettings, ModelCard
from voicemesh.errors import InvalidInput, VoiceMeshError
from voicemesh.services.tts.backend import TTS_CAPABILITIES, VoiceOptions
from voicemesh.services.tts.backends.websocket import (
    WebSocketSession,
    WebSocketTtsBackend,
    resample,
    whole_samples,
)

log = logging.getLogger(__name__)

RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)  # the pcm_<rate> output formats ElevenLabs documents
DEFAULT_RATE = 24000
DEFAULT_VOICE = "21m00Tcm4TlvDq8ikWAM"  # "Rachel", ElevenLabs' default premade voice
CLOSE_WAIT_S = 2.0  # how long the end of a stream waits for ElevenLabs' isFinal
MODELS = ("eleven_flash_v2_5", "eleven_turbo_v2_5", "eleven_multilingual_v2")


class ElevenLabsTtsBackend(WebSocketTtsBackend):
    """Speech from ElevenLabs' ``/v1/text-to-speech/{voice_id}/stream-input``."""

    provider = "elevenlabs"
    default_base_url = "https://api.elevenlabs.io"
    key_env = ("ELEVEN_API_KEY",)

    @classmethod
    def catalog(cls, settings: BackendSettings) -> list[ModelCard]:
        return [
            ModelCard(descriptor=f"elevenlabs/{model}", sample_rates_hz=RATES, capabilities=TTS_CAPABILITIES,
                      description="ElevenLabs stream-input WebSocket with character alignment; voice = voice id")
            for model in MODELS
        ]

    def native_rate(self, voice: str) -> int:
        return DEFAULT_RATE

    def check_voice(self, voice: str) -> str:
        voice = voice or self.options.extra.get("voice", "") or DEFAULT_VOICE
        if not voice.isalnum():
            raise InvalidInput(f"ElevenLabs voice ids are letters and digits, got {voice!r}", model=self.descriptor)
        return voice

    def open_session(self, options: VoiceOptions) -> ElevenLabsSession:
        rate = options.sample_rate_hz if options.sample_rate_hz in RATES else DEFAULT_RATE
        return ElevenLabsSession(self, options, rate)


class ElevenLabsSession(WebSocketSession):
    """One reply's socket; each segment flushed, its end found by its aligned characters."""

    backend: ElevenLabsTtsBackend

    async def speak(self, text: str) -> AsyncIterator[bytes]:
        backend = self.backend
        query = {"model_id": backend.model, "output_format": f"pcm_{self.provider_rate}"}
        url = backend.ws_url(f"/v1/text-to-speech/{self.options.voice}/stream-input", query)
        if await self.open(url, {"xi-api-key": backend.require_key()}):
            first: dict[str, Any] = {"text": " ", "voice_settings": {"stability": 0.5, "similarity_boost": 0.8}}
            if self.options.speed and self.options.speed != 1.0:
                first["voice_settings"]["speed"] = self.options.speed
            await self.send(first)
        # ElevenLabs wants every piece to end in a space; the segment's end is found by its characters.
        await self.send({"text": text.strip() + " ", "try_trigger_generation": True, "flush": True})
        remaining = sum(1 for c in text if not c.isspace())
        resampler, carry = self.resampler(), b""
        while remaining > 0:
            message = backend.parse(await self.recv())
            if message.get("error") or (message.get("message") and "audio" not in message):
                raise backend.frame_error(0, f"{message.get('error', '')}: {message.get('message', '')}")
            if message.get("isFinal"):
                break  # the provider ended the input: whatever was not aligned has no audio
            if "audio" not in message:
                raise backend.malformed(json.dumps(message)[:120])
            if message["audio"]:
                pcm, carry = whole_samples(carry + _audio(backend, message["audio"]))
                if out := resample(resampler, pcm):
                    yield out
            remaining -= _aligned(backend, message.get("alignment"))
        if tail := resample(resampler, b"", last=True):
            yield tail

    async def cancel(self) -> None:
        await self.drop()  # closing the socket is how ElevenLabs stops a generation

    async def aclose(self) -> None:
        """End the input as documented (``{"text": ""}``) and let ElevenLabs close after ``isFinal``."""
        if self.ws is not None:
            try:
                await self.send({"text": ""})
                async with asyncio.timeout(CLOSE_WAIT_S):
                    while not self.backend.parse(await self.recv()).get("isFinal"):
                        pass  # every segment was flushed and heard out: nothing of use is left
            except (VoiceMeshError, TimeoutError) as exc:  # a socket already gone or slow to end needs no goodbye
                log.debug("ElevenLabs socket ended without its isFinal: %s", exc)
        await self.drop()


def _audio(backend: ElevenLabsTtsBackend, data: Any) -> bytes:
    if not isinstance(data, str):
        raise backend.malformed("audio that is not a base64 string")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise backend.malformed("audio that is not base64") from None


def _aligned(backend: ElevenLabsTtsBackend, alignment: Any) -> int:
    """Characters other than spaces that an ``alignment`` covers."""
    if alignment is None:
        return 0
    chars = alignment.get("chars") if isinstance(alignment, dict) else None
    if not isinstance(chars, list):
        raise backend.malformed("alignment without chars")
    return sum(1 for c in chars if isinstance(c, str) and not c.isspace())
