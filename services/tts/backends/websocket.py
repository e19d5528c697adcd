"""What the streaming TTS providers (Cartesia, ElevenLabs, Deepgram Aura) share: one WebSocket per stream.

Each provider speaks its own messages; this module holds what they have in
common. The key comes from the stream's options, ``VOICEMESH_<PROVIDER>_API_KEY``
or the provider's usual variable (``key_env``), the last two only with the
operator's URL (``voicemesh.targets``). A refused handshake maps its HTTP status
like any remote answer (``remote.status_error``), a close code or an error
frame maps to its status here, and a frame that is not the documented JSON is
UNAVAILABLE with what was wrong, so no provider failure surfaces as INTERNAL.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.protocol import State

from voicemesh import remote
from voicemesh.audio import StreamResampler, float_to_pcm, pcm_to_float
from voicemesh.errors import (
    DeadlineExceeded,
    InvalidInput,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    VoiceMeshError,
)
from voicemesh.services.tts.backend import SpeechSession, TtsBackend, VoiceOptions

log = logging.getLogger(__name__)

_CLOSE_CODES: dict[int, type[VoiceMeshError]] = {
    1003: InvalidInput,  # unsupported data
    1007: InvalidInput,  # invalid payload
    1008: PermissionDenied,  # policy violation (refined by the reason below)
    1009: InvalidInput,  # message too big
    1013: ResourceExhausted,  # try again later
}


_WORDS = {ResourceExhausted: "over quota or out of credits", Unauthenticated: "the API key was refused"}


def _classify(text: str) -> type[VoiceMeshError] | None:
    """Quota or key trouble, as providers word it in close reasons and error frames."""
    lowered = text.lower()
    if any(word in lowered for word in ("quota", "credit", "limit")):
        return ResourceExhausted
    if any(word in lowered for word in ("auth", "api key", "api_key", "credentials")):
        return Unauthenticated
    return None


class WebSocketTtsBackend(remote.RemoteBackend, TtsBackend):
    """A TTS provider reached over one WebSocket per Synthesize stream."""

    def open_session(self, options: VoiceOptions) -> WebSocketSession:
        raise NotImplementedError

    async def stream(self, text: str, options: VoiceOptions) -> AsyncIterator[bytes]:
        """One segment on a session of its own (a Synthesize stream speaks through ``open_session``)."""
        session = self.open_session(options)
        try:
            async for piece in session.speak(text):
                yield piece
        finally:
            await session.aclose()

    def ws_url(self, path: str, query: dict[str, Any] | None = None) -> str:
        """The WebSocket URL of ``path`` under the base URL (an http(s) base becomes ws(s))."""
        base = self.options.base_url
        for plain, secure in (("http://", "ws://"), ("https://", "wss://")):
            if base.startswith(plain):
                base = secure + base[len(plain):]
        return base + path + ("?" + urlencode(query) if query else "")

    def require_key(self) -> str:
        if not self.options.api_key:
            env = " or ".join((f"VOICEMESH_{self.provider.upper()}_API_KEY", *self.key_env))
            raise Unauthenticated(f"no API key for {self.descriptor}: set {env} on the service, or send api_key",
                                  model=self.descriptor)
        return self.options.api_key

    async def connect(self, url: str, headers: dict[str, str]) -> ClientConnection:
        """An open socket to ``url``; a refused or failed handshake raises its VoiceMesh error."""
        endpoint = url.split("?", 1)[0]
        try:
            return await connect(url, additional_headers=headers, open_timeout=self.options.timeout_s,
                                 max_size=2**24, ping_interval=None)
        except InvalidStatus as exc:
            status = exc.response.status_code
            log.warning("%s refused the WebSocket: HTTP %d %s", endpoint, status,
                        remote.error_detail(exc.response.body or b"") or "(no body)")
            raise self.status_error(status, endpoint) from None
        except TimeoutError:
            raise DeadlineExceeded(f"{endpoint} did not open within {self.options.timeout_s:g} s",
                                   model=self.descriptor) from None
        except (OSError, InvalidHandshake) as exc:
            raise Unavailable(f"cannot reach {endpoint}: {exc or type(exc).__name__}", model=self.descriptor) from None

    def status_error(self, status: int, endpoint: str) -> VoiceMeshError:
        """An HTTP-like status of the provider; 402 is how voice providers say the credits ran out."""
        if status == 402:
            return ResourceExhausted(f"remote {endpoint} answered HTTP 402 (Payment Required) for {self.descriptor}: "
                                     "out of credits or over quota", model=self.descriptor)
        return remote.status_error(status, endpoint=endpoint, model=self.descriptor)

    def closed_error(self, exc: ConnectionClosed) -> VoiceMeshError:
        """The error of a socket the provider closed (or lost) before the audio ended.

        The close reason is the provider's text: it is logged and classified, never relayed.
        """
        frame = exc.rcvd
        code, why = (frame.code, frame.reason) if frame else (1006, "")
        if why:
            log.warning("%s closed the WebSocket with code %d: %s", self.descriptor, code, why)
        kind = _classify(why)
        note = _WORDS[kind] if kind else "" if frame else "connection lost"
        message = f"{self.descriptor}: the provider closed the WebSocket (code {code}{', ' + note if note else ''})"
        return (kind or _CLOSE_CODES.get(code, Unavailable))(message, model=self.descriptor)

    def frame_error(self, status: int, text: str) -> VoiceMeshError:
        """The error of an error frame, by its HTTP-like status (0 when it has none) or else by its words.

        Like an HTTP error body, the frame's text goes to the log, not to the client.
        """
        log.warning("%s sent an error frame (status %d): %s", self.descriptor, status, text[:300])
        if status >= 400:
            error = self.status_error(status, f"{self.provider} stream")
            return type(error)(f"{error.message} in an error frame", model=self.descriptor)
        kind = _classify(text) or Unavailable
        return kind(f"{self.descriptor}: the provider sent an error frame ({_WORDS.get(kind, 'failed')})",
                    model=self.descriptor)

    def malformed(self, what: str) -> Unavailable:
        return Unavailable(f"{self.descriptor} sent a malformed frame: {what[:200]}", model=self.descriptor)

    def parse(self, frame: str | bytes) -> dict[str, Any]:
        """A JSON object frame, or UNAVAILABLE naming what arrived instead."""
        if isinstance(frame, bytes):
            raise self.malformed(f"unexpected binary frame of {len(frame)} bytes")
        try:
            data = json.loads(frame)
        except ValueError:
            raise self.malformed(repr(frame[:80])) from None
        if not isinstance(data, dict):
            raise self.malformed(repr(frame[:80]))
        return data


class WebSocketSession(SpeechSession):
    """A stream's socket, opened on its first segment and closed with the session."""

    backend: WebSocketTtsBackend

    def __init__(self, backend: WebSocketTtsBackend, options: VoiceOptions, provider_rate: int):
        super().__init__(backend, options)
        self.provider_rate = provider_rate
        self.ws: ClientConnection | None = None

    async def open(self, url: str, headers: dict[str, str]) -> bool:
        """Open the socket unless it is open; True when a new one was opened.

        A provider closes a socket that sat idle (between replies, say): that one is replaced.
        """
        if self.ws is not None and self.ws.state is State.OPEN:
            return False
        await self.drop()
        self.ws = await self.backend.connect(url, headers)
        return True

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None  # only called after open
        try:
            await self.ws.send(json.dumps(message))
        except ConnectionClosed as exc:
            raise self.backend.closed_error(exc) from None

    async def recv(self) -> str | bytes:
        assert self.ws is not None
        try:
            return await asyncio.wait_for(self.ws.recv(), self.backend.options.timeout_s)
        except TimeoutError:
            raise DeadlineExceeded(f"{self.backend.descriptor} sent nothing for {self.backend.options.timeout_s:g} s",
                                   model=self.backend.descriptor) from None
        except ConnectionClosed as exc:
            raise self.backend.closed_error(exc) from None

    def resampler(self) -> StreamResampler:
        return StreamResampler(self.provider_rate, self.options.sample_rate_hz or self.provider_rate)

    async def drop(self) -> None:
        """Close the socket now (barge-in or end); the next segment opens a new one."""
        ws, self.ws = self.ws, None
        if ws is not None:
            await ws.close()

    async def aclose(self) -> None:
        await self.drop()


def resample(resampler: StreamResampler, pcm: bytes, last: bool = False) -> bytes:
    """Provider audio at the rate the stream asked for (empty when the resampler holds it back)."""
    out = resampler.process(pcm_to_float(pcm), last=last)
    return float_to_pcm(out) if len(out) else b""


def whole_samples(pcm: bytes) -> tuple[bytes, bytes]:
    """``pcm`` cut after its last whole sample, and the odd byte left over (for the next frame)."""
    cut = len(pcm) - len(pcm) % 2
    return pcm[:cut], pcm[cut:]
