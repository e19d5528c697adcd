"""What the native streaming STT backends (Deepgram, AssemblyAI) share: one WebSocket per stream.

A provider's module says how to build the URL and headers, what to send when the
input ends, and how to read its messages (a ``Turns`` parser); this module owns
the socket: the handshake and its HTTP errors, audio sent as it arrives (re-chunked
to the provider's limits), KeepAlive while the input is idle, the wait for the
provider's last results once the input ended, and the mapping of close codes,
malformed frames and dropped connections to VoiceMesh errors. Audio seconds are
counted from what was sent, so usage never depends on the provider's say-so.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar
from urllib.parse import urlencode

from voicemesh import remote
from voicemesh.errors import DeadlineExceeded, ResourceExhausted, Unavailable, VoiceMeshError, require_module
from voicemesh.services.stt.backend import RecognitionOptions, SttBackend, SttEvent, UsageEvent

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 1 << 20
AUDIO_PARAMETERS = frozenset({"encoding", "sample_rate", "channels"})  # a transcript message is a few kB; anything near this is not one


class Turns:
    """Reads one provider's messages into VoiceMesh events (one instance per stream)."""

    def feed(self, message: dict[str, Any]) -> list[SttEvent]:
        """The events one JSON message gives; a VoiceMeshError for an error message."""
        raise NotImplementedError

    def flush(self) -> list[SttEvent]:
        """The events still owed when the provider has closed (an utterance it never ended)."""
        return []

    @property
    def finished(self) -> bool:
        """Whether the provider said its last word (then the client may close)."""
        return False


class StreamingSttBackend(remote.RemoteBackend, SttBackend):
    """One provider WebSocket per Recognize stream; see the module docstring."""

    #: Path appended to the base URL.
    path: ClassVar[str] = ""
    #: Smallest and largest audio message the provider accepts, in ms (0: no lower limit).
    min_chunk_ms: ClassVar[int] = 0
    max_chunk_ms: ClassVar[int] = 1000
    #: Send the provider's KeepAlive after this many seconds without audio (0: never).
    keepalive_s: ClassVar[float] = 0.0

    async def load(self) -> None:
        """Nothing to open ahead (each stream has its own socket); only check the WebSocket client is there."""
        require_module("websockets", "realtime")

    async def close(self) -> None:
        """Streams close their own sockets."""

    # What a provider module supplies.
    def query(self, options: RecognitionOptions) -> dict[str, str]:
        raise NotImplementedError

    def headers(self) -> dict[str, str]:
        raise NotImplementedError

    def turns(self, options: RecognitionOptions) -> Turns:
        raise NotImplementedError

    def end_messages(self) -> list[dict[str, Any]]:
        """What to send once the input has ended, in order."""
        raise NotImplementedError

    def keepalive_message(self) -> dict[str, Any] | None:
        return None

    def close_error(self, code: int, reason: str) -> VoiceMeshError | None:
        """The error a close code means; None for a normal close."""
        raise NotImplementedError

    def handshake_error(self, status: int, detail: str) -> VoiceMeshError:
        """The error of a refused handshake (HTTP status); 402 is an account out of credit."""
        log.warning("%s refused the WebSocket handshake: HTTP %d %s", self.descriptor, status, detail)
        if status == 402:
            return ResourceExhausted(f"{self.provider} answered HTTP 402 (Payment Required) for {self.descriptor}",
                                     model=self.descriptor)
        return remote.status_error(status, endpoint=self.path, model=self.descriptor)

    # The stream.
    def url(self, options: RecognitionOptions) -> str:
        # extra: more of the provider's query parameters; never the audio format, which the service decides
        extra = {k: v for k, v in self.options.extra.items() if k not in AUDIO_PARAMETERS}
        params = {**self.query(options), **extra}
        base = self.options.base_url
        return base + self.path + "?" + urlencode(params)

    async def recognize(self, options: RecognitionOptions, audio: AsyncIterator[bytes]) -> AsyncIterator[SttEvent]:
        socket = await self._connect(self.url(options))
        turns = self.turns(options)
        sent = _Sent()
        sender = asyncio.create_task(self._send(socket, audio, options, sent), name=f"{self.provider}-send")
        keepalive = (asyncio.create_task(self._keepalive(socket, sent, sender), name=f"{self.provider}-keepalive")
                     if self.keepalive_s and self.keepalive_message() else None)
        try:
            while not turns.finished:
                message = await self._receive(socket, sender)
                if message is None:
                    break
                for event in self._read(turns, message):
                    yield event
            _raise_from(sender)
            for event in turns.flush():
                yield event
            yield UsageEvent(audio_seconds_in=sent.samples / options.sample_rate_hz,
                             model=self.descriptor + (f":{options.language}" if options.language else ""))
        finally:
            for task in (sender, keepalive):
                if task is not None:
                    task.cancel()
            await asyncio.gather(*(t for t in (sender, keepalive) if t is not None), return_exceptions=True)
            await socket.close()

    def _read(self, turns: Turns, message: dict[str, Any]) -> list[SttEvent]:
        try:
            return turns.feed(message)
        except (KeyError, IndexError, TypeError, ValueError):  # a field of the wrong shape: the provider's fault
            log.warning("%s sent a message unlike its documented form: %r", self.descriptor, message)
            raise Unavailable(f"{self.descriptor} sent a {message.get('type')} message unlike its documented form "
                              "(malformed frame)", model=self.descriptor) from None

    async def _connect(self, url: str) -> Any:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

        shown = url.split("?")[0]
        try:
            return await connect(url, additional_headers=self.headers(), open_timeout=self.options.timeout_s,
                                 max_size=MAX_MESSAGE_BYTES, ping_interval=None, compression=None)
        except InvalidStatus as exc:
            response = exc.response
            detail = response.headers.get("dg-error", "") or response.body.decode("utf-8", "replace")[:300]
            raise self.handshake_error(response.status_code, detail) from None
        except InvalidURI as exc:
            raise Unavailable(f"{shown} is not a WebSocket URL: {exc}", model=self.descriptor) from None
        except TimeoutError:
            raise DeadlineExceeded(f"{shown} did not accept the WebSocket within {self.options.timeout_s:g} s",
                                   model=self.descriptor) from None
        except (OSError, InvalidHandshake) as exc:
            raise Unavailable(f"cannot reach {shown}: {exc or type(exc).__name__}", model=self.descriptor) from None

    async def _receive(self, socket: Any, sender: asyncio.Task) -> dict[str, Any] | None:
        """The next JSON message; None once the provider closed normally."""
        from websockets.exceptions import ConnectionClosed

        try:
            if sender.done():
                # The input has ended: the provider owes its last results within the timeout, no longer.
                raw = await asyncio.wait_for(socket.recv(), self.options.timeout_s)
            else:
                raw = await _first(socket.recv(), sender)
                if raw is None:  # the input ended (or failed) while we waited: wait again under the deadline
                    _raise_from(sender)
                    return await self._receive(socket, sender)
        except TimeoutError:
            raise DeadlineExceeded(f"{self.descriptor} sent no final result within {self.options.timeout_s:g} s "
                                   "of the end of the audio", model=self.descriptor) from None
        except ConnectionClosed as exc:
            return self._closed(exc)
        if isinstance(raw, bytes):
            raise Unavailable(f"{self.descriptor} sent a binary frame where JSON was expected (malformed frame)",
                              model=self.descriptor)
        try:
            message = json.loads(raw)
        except ValueError:
            log.warning("%s sent a frame that is not JSON: %r", self.descriptor, raw[:200])
            raise Unavailable(f"{self.descriptor} sent a frame that is not JSON (malformed frame)",
                              model=self.descriptor) from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise Unavailable(f"{self.descriptor} sent a JSON frame without a message type (malformed frame)",
                              model=self.descriptor)
        return message

    def _closed(self, exc: Any) -> None:
        received = exc.rcvd
        if received is None:
            raise Unavailable(f"the connection to {self.descriptor} dropped without a close frame",
                              model=self.descriptor)
        error = self.close_error(received.code, received.reason)
        if error is not None:
            log.warning("%s closed the stream: %d %s", self.descriptor, received.code, received.reason)
            raise error
        return None

    async def _send(self, socket: Any, audio: AsyncIterator[bytes], options: RecognitionOptions,
                    sent: _Sent) -> None:
        bytes_per_ms = options.sample_rate_hz * 2 / 1000
        low, high = int(self.min_chunk_ms * bytes_per_ms) // 2 * 2, int(self.max_chunk_ms * bytes_per_ms) // 2 * 2
        pending = b""
        async for chunk in audio:
            pending += chunk
            while len(pending) >= max(low, 2):
                part, pending = pending[:high], pending[high:]
                await sent.send(socket, part)
        if pending:  # the provider refuses a too short last chunk: pad it with silence (not counted as usage)
            await sent.send(socket, pending, padded_to=low)
        for message in self.end_messages():
            await socket.send(json.dumps(message))

    async def _keepalive(self, socket: Any, sent: _Sent, sender: asyncio.Task) -> None:
        message = json.dumps(self.keepalive_message())
        while True:
            await asyncio.sleep(max(0.1, self.keepalive_s - (time.monotonic() - sent.last)))
            if sender.done():
                return
            if time.monotonic() - sent.last >= self.keepalive_s:
                await socket.send(message)
                sent.last = time.monotonic()


class _Sent:
    """Audio sent so far (16-bit samples) and when the last message left."""

    def __init__(self) -> None:
        self.samples = 0
        self.last = time.monotonic()

    async def send(self, socket: Any, pcm: bytes, padded_to: int = 0) -> None:
        self.samples += len(pcm) // 2
        await socket.send(pcm + bytes(max(0, padded_to - len(pcm))))
        self.last = time.monotonic()


async def _first(receive: Any, sender: asyncio.Task) -> Any:
    """What ``receive`` gives, or None if ``sender`` finishes first (``receive`` is then cancelled)."""
    task = asyncio.ensure_future(receive)
    try:
        await asyncio.wait({task, sender}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return None


def _raise_from(sender: asyncio.Task) -> None:
    """Re-raise what made the audio sender fail (bad client audio, or the socket closing under it)."""
    from websockets.exceptions import ConnectionClosed

    if sender.done() and not sender.cancelled():
        exc = sender.exception()
        if exc is not None and not isinstance(exc, ConnectionClosed):  # a closed socket is reported by receive
            raise exc
