"""The events a session sends to its client, and the clock of the user's audio."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable

from voicemesh.v1 import agent_pb2

_END = object()


class Outbox:
    """A queue of SessionResponse messages whose queued audio can be dropped at once.

    ``on_sent`` callbacks run when the servicer takes the message to send
    it, so the session counts audio the client really got.
    """

    def __init__(self) -> None:
        self._items: collections.deque = collections.deque()
        self._ready = asyncio.Event()

    def put(self, message: agent_pb2.SessionResponse, on_sent: Callable[[], None] | None = None) -> None:
        self._items.append((message, on_sent))
        self._ready.set()

    def end(self, error: BaseException | None = None) -> None:
        """No more messages; ``get`` raises ``error`` when given."""
        self._items.append((_END, error))
        self._ready.set()

    def drop_audio(self, turn_id: int) -> int:
        """Remove queued audio of ``turn_id``; returns how many messages were dropped."""
        kept = collections.deque(
            item for item in self._items
            if not (item[0] is not _END and item[0].WhichOneof("event") == "agent_audio"
                    and item[0].agent_audio.turn_id == turn_id)
        )
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
