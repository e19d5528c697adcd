"""Remote synthesis through an OpenAI-compatible ``/audio/speech`` API (``openai/<model>:<voice>``).

Each segment is one ``POST {base_url}/audio/speech`` with
``response_format: "pcm"`` (raw s16le mono at 24 kHz, OpenAI's documented
format), read as a stream so audio flows before the whole answer is made.
``base_url`` and ``api_key`` are resolved by ``voicemesh.targets`` (the
operator's ``VOICEMESH_OPENAI_*`` / ``OPENAI_*``, or the stream's own on the
allowlist). Any model name is accepted: the remote decides what it serves.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

from voicemesh import remote
from voicemesh.backend import BackendSettings, ModelCard
from voicemesh.services.tts.backend import TTS_CAPABILITIES, TtsBackend, VoiceOptions

log = logging.getLogger(__name__)

PCM_RATE = 24000  # OpenAI's "pcm" response format: 24 kHz, 16-bit signed little-endian, mono
DEFAULT_VOICE = "alloy"
OPENAI_MODELS = ("gpt-4o-mini-tts", "tts-1", "tts-1-hd")
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse")


class OpenAITtsBackend(remote.RemoteBackend, TtsBackend):
    """Speech from any server that implements OpenAI's ``POST /audio/speech``."""

    provider = "openai"

    @classmethod
    def catalog(cls, settings: BackendSettings) -> list[ModelCard]:
        return [
            ModelCard(
                descriptor=f"openai/{model}",
                sample_rates_hz=(PCM_RATE,),
                voices=OPENAI_VOICES,
                capabilities=TTS_CAPABILITIES,
                description="remote OpenAI-compatible /audio/speech (any model name the remote serves)",
            )
            for model in OPENAI_MODELS
        ]

    def native_rate(self, voice: str) -> int:
        return PCM_RATE

    def check_voice(self, voice: str) -> str:
        return voice or self.options.extra.get("voice", "") or DEFAULT_VOICE

    async def stream(self, text: str, options: VoiceOptions) -> AsyncIterator[bytes]:
        client = self.http_client()
        url = f"{self.options.base_url}/audio/speech"
        body = {
            "model": self.model,
            "input": text,
            "voice": self.check_voice(options.voice),
            "response_format": "pcm",
            "speed": options.speed or 1.0,
        }
        if instructions := self.options.extra.get("instructions"):
            body["instructions"] = instructions
        model = f"{self.provider}/{self.model}"
        carry = b""
        try:
            request = client.build_request("POST", url, json=body)
            response = await remote.send(client, request, endpoint="/audio/speech", model=model)
            try:
                async for data in response.aiter_bytes():
                    data = carry + data
                    cut = len(data) - len(data) % 2
                    carry = data[cut:]
                    if cut:
                        yield data[:cut]
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise remote.transport_error(exc, url=url, timeout_s=self.options.timeout_s, model=model) from None

