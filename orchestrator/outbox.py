"""The events a session sends to its client, and the clock of the user's audio."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable

from voicemesh.errors import ResourceExhausted
from voicemesh.v1 import agent_pb2

_END = object()
# Unsent events one session may hold for a client that does not read: over ten minutes of 24 kHz agent audio, or
# ~6 s of raw I420 avatar video (JPEG frames, the default, are ~20x smaller). Past it the client is gone or stuck,
# and holding more only grows the orchestrator's memory for nobody.
MAX_UNSENT_BYTES = 64 << 20


class Outbox:
    """A queue of SessionResponse messages whose queued audio can be dropped at once.

    ``on_sent`` callbacks run when the servicer takes the message to send
    it, so the session counts audio the client really got.
    """

    def __init__(self, max_unsent_bytes: int = MAX_UNSENT_BYTES) -> None:
        self._items: collections.deque = collections.deque()
        self._ready = asyncio.Event()
        self.max_unsent_bytes = max_unsent_bytes
        self.unsent_bytes = 0
        self.overflowed = False

    def put(self, message: agent_pb2.SessionResponse, on_sent: Callable[[], None] | None = None) -> None:
        if self.overflowed:
            return
        self.unsent_bytes += message.ByteSize()
        if self.unsent_bytes > self.max_unsent_bytes:
            # Everything queued is dropped and the stream ends with this error as soon as the client reads again.
            self.overflowed = True
            self._items = collections.deque([(_END, ResourceExhausted(
                f"the client has not read {self.unsent_bytes} bytes of session events "
                f"(limit {self.max_unsent_bytes}); the session is closed"))])
            self.unsent_bytes = 0
        else:
            self._items.append((message, on_sent))
        self._ready.set()

    def end(self, error: BaseException | None = None) -> None:
        """No more messages; ``get`` raises ``error`` when given."""
        self._items.append((_END, error))
        self._ready.set()

    def drop_audio(self, turn_id: int) -> int:
        """Remove queued audio of ``turn_id``; returns how many messages were dropped."""
        kept: collections.deque = collections.deque()
        for item in self._items:
            message = item[0]
            if (message is not _END and message.WhichOneof("event") == "agent_audio"
                    and message.agent_audio.turn_id == turn_id):
                self.unsent_bytes -= message.ByteSize()
            else:
                kept.append(item)
        dropped = len(self._items) - len(kept)
        self._items = kept
        return dropped

    async def get(self) -> agent_pb2.SessionResponse | None:
        """The next message, or None at the end."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        message, extra = self._items.popleft()
        if message is _END:
            if extra is not None:
                raise extra
            return None
        self.unsent_bytes -= message.ByteSize()
        if extra is not None:
            extra()
        return message


class AudioClock:
    """When the user's audio arrived: maps a position on the audio timeline to wall time."""

    def __init__(self, rate: int):
        self.rate = rate
        self.samples = 0
        self._marks: collections.deque[tuple[float, float]] = collections.deque(maxlen=6000)  # (end ms, wall)

    @property
    def ms(self) -> float:
        """Audio received so far, in ms."""
        return self.samples * 1000 / self.rate

    def received(self, samples: int, now: float | None = None) -> None:
        self.samples += samples
        self._marks.append((self.ms, time.monotonic() if now is None else now))

    def wall_at(self, ms: float) -> float | None:
        """Wall time (monotonic) at which audio up to ``ms`` had arrived; None when unknown."""
        for end, wall in self._marks:
            if end >= ms:
                return wall
        return self._marks[-1][1] if self._marks else None
