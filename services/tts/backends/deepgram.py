"""Deepgram's Aura streaming speech over its speak WebSocket (``deepgram/aura-...``).

One socket per stream: ``wss://api.deepgram.com/v1/speak?model=aura-...&encoding=linear16&sample_rate=...``
with ``Authorization: Token <key>``. Each segment is a ``Speak`` message and a
``Flush``; its audio arrives as binary frames and ``Flushed`` ends it. A
barge-in sends ``Clear``: audio already on its way is dropped until
``Cleared``. ``Metadata`` is logged, ``Warning`` logged as a warning, and
``Close`` ends the socket with the stream. The voice is part of the model name
(``aura-2-thalia-en``); a descriptor variant is not used.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from voicemesh.backend import BackendSettings, ModelCard
from websockets.exceptions import ConnectionClosed

from voicemesh.errors import InvalidInput, VoiceMeshError
from voicemesh.services.tts.backend import VoiceOptions
from voicemesh.services.tts.backends.websocket import (
    WebSocketSession,
    WebSocketTtsBackend,
    resample,
    whole_samples,
)

log = logging.getLogger(__name__)

RATES = (8000, 16000, 24000, 32000, 48000)  # linear16 rates Aura streaming documents
DEFAULT_RATE = 24000
MODELS = ("aura-2-thalia-en", "aura-2-andromeda-en", "aura-asteria-en")
CAPABILITIES = {"streaming": True, "alignment": False}  # Aura sends no word or character timings


class DeepgramTtsBackend(WebSocketTtsBackend):
    """Speech from Deepgram's ``/v1/speak`` WebSocket (Aura voices)."""

    provider = "deepgram"
    default_base_url = "https://api.deepgram.com"
    key_env = ("DEEPGRAM_API_KEY",)

    @classmethod
    def catalog(cls, settings: BackendSettings) -> list[ModelCard]:
        return [
            ModelCard(descriptor=f"deepgram/{model}", sample_rates_hz=RATES, capabilities=CAPABILITIES,
                      description="Deepgram Aura streaming TTS (Speak, Flush, Clear); the voice is in the model name")
            for model in MODELS
        ]

    def native_rate(self, voice: str) -> int:
        return DEFAULT_RATE

    def closed_error(self, exc: ConnectionClosed) -> VoiceMeshError:
        """Deepgram names the fault in the close reason: DATA-* is the input's, NET-* the network's."""
        reason = exc.rcvd.reason if exc.rcvd else ""
        if reason.startswith("DATA-"):
            log.warning("%s closed with code %d: %s", self.descriptor, exc.rcvd.code, reason)
            return InvalidInput(f"{self.descriptor}: Deepgram refused the input (code {exc.rcvd.code})",
                                model=self.descriptor)
        return super().closed_error(exc)

    def open_session(self, options: VoiceOptions) -> DeepgramSession:
        rate = options.sample_rate_hz if options.sample_rate_hz in RATES else DEFAULT_RATE
        return DeepgramSession(self, options, rate)


class DeepgramSession(WebSocketSession):
    """One stream's socket: Speak and Flush per segment, Clear on barge-in."""

    backend: DeepgramTtsBackend

    def __init__(self, backend: DeepgramTtsBackend, options: VoiceOptions, provider_rate: int):
        super().__init__(backend, options, provider_rate)
        self.clearing = False  # a Clear was sent and its Cleared has not come back

    async def speak(self, text: str) -> AsyncIterator[bytes]:
        backend = self.backend
        query = {"model": backend.model, "encoding": "linear16", "sample_rate": self.provider_rate}
        if await self.open(backend.ws_url("/v1/speak", query), {"Authorization": f"Token {backend.require_key()}"}):
            self.clearing = False
        await self.send({"type": "Speak", "text": text})
        await self.send({"type": "Flush"})
        resampler, carry = self.resampler(), b""
        while True:
            frame = await self.recv()
            if isinstance(frame, bytes):
                if self.clearing:
                    continue  # audio of the reply that was cleared
                pcm, carry = whole_samples(carry + frame)
                if out := resample(resampler, pcm):
                    yield out
                continue
            message = backend.parse(frame)
            kind = message.get("type")
            if kind == "Cleared":
                self.clearing = False
            elif kind == "Flushed" and not self.clearing:
                break
            elif kind == "Metadata":
                log.debug("Deepgram Aura stream %s (%s)", message.get("request_id"), message.get("model_name"))
            elif kind == "Warning":
                log.warning("Deepgram Aura warning %s: %s", message.get("code"), message.get("description"))
            elif kind == "Error" or "err_code" in message:
                raise backend.frame_error(0, f"{message.get('err_code', '')} {message.get('err_msg') or message.get('description', '')}")
            elif kind != "Flushed":
                raise backend.malformed(f"unknown message type {kind!r}")
        if tail := resample(resampler, b"", last=True):
            yield tail

    async def cancel(self) -> None:
        if self.ws is not None:
            await self.send({"type": "Clear"})
            self.clearing = True

    async def aclose(self) -> None:
        if self.ws is not None:
            try:
                await self.send({"type": "Close"})
            except VoiceMeshError:  # a socket already gone needs no goodbye
                log.debug("Deepgram socket gone before its Close")
        await self.drop()
