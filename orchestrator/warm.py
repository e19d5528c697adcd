"""The next reply's TTS stream, opened while the user speaks (``--warm-tts-stream``).

A Synthesize stream costs a gRPC call, the TTS service's key and quota
check (a ledger query when it keeps one), the voice lookup and a synthesis
session before the first text can be spoken. ``WarmVoice`` pays that while
the user is still talking: when the STT hears speech start, it opens one
stream with the metadata of the turn that speech may become (``x-turn-id``:
the service bills the stream under that turn), and hands it to the reply of
exactly that turn and voice (a held reply generated ahead included). Each
stream still carries one reply, so the service's Usage at the stream's end
stays one record per turn.

No stale audio: a held stream has never been written to. The stream that
carried a reply, cut by a barge-in or dropped as a held reply, is cancelled
by its reply (``Reply._close``) and never comes back here; the user's words
that cut it open a fresh one for their turn.

Only when a turn is coming: a session that waits holds no TTS stream, and a
stream is rarely thrown away unused. That matters for the ledger: a
cancelled Synthesize stream that spoke nothing is sometimes recorded by the
service as a finished one with a zero Usage (its reader sees the end of the
stream before the cancellation). A stream for another turn or voice is
cancelled, never half-closed (a half-close always ends in a zero Usage); a
voice switch, a switch to a realtime model and the session's end cancel it
too. Speech that became no turn leaves its stream for the next turn; one
left unused for the services' ``--idle-timeout-s`` is ended by the service
(with an error and no usage record), and the reply that finds it ended opens
its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from voicemesh.orchestrator.fallback import Target
from voicemesh.orchestrator.lanes import BROKEN, TtsLane

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Held:
    """A stream opened (or opening) for ``turn`` on ``target``."""

    turn: int
    target: Target
    task: asyncio.Task | None = None  # opens the stream; its result is the TtsLane (None: it could not open)
    opened_at: float = field(default_factory=time.monotonic)

    def lane(self) -> TtsLane | None:
        """The stream, if it opened and is still usable."""
        lane = _result(self.task)
        return None if lane is None or lane.call.done() else lane


class WarmVoice:
    """Holds at most one TTS stream opened ahead for the next reply."""

    def __init__(self, open_lane: Callable[[int, Target], Awaitable[TtsLane]], *, spawn, enabled: bool):
        self._open_lane, self._spawn, self.enabled = open_lane, spawn, enabled
        self._held: _Held | None = None

    def prepare(self, turn: int, target: Target) -> None:
        """Have a stream ready for ``turn`` on ``target``."""
        if not self.enabled:
            return
        held = self._held
        if (held is not None and held.turn == turn and held.target == target
                and (held.task is not None and not held.task.done() or held.lane() is not None)):
            return
        self.close()
        held = self._held = _Held(turn, target)
        held.task = self._spawn(self._open(held), f"warm-voice-{turn}")

    async def take(self, turn: int, target: Target) -> TtsLane | None:
        """The held stream if it is for ``turn`` on ``target`` and usable (it is then the caller's); else None."""
        held = self._held
        if held is None or held.task is None:
            return None
        if held.turn > turn and held.target == target:
            return None  # it waits for a later turn (a resumed reply speaks for an older one)
        self._held = None
        if held.turn != turn or held.target != target:
            _discard(held)
            return None
        # Still opening: waiting for it costs no more than opening another (shielded: a cancelled reply leaves
        # the task to be discarded, not torn mid-write).
        try:
            await asyncio.shield(held.task)
        except asyncio.CancelledError:
            _discard(held)
            raise
        lane = held.lane()
        if lane is None:  # it broke while idle (a dead service, a refused key): the reply opens its own
            _discard(held)
            return None
        log.info("turn %d speaks on the TTS stream opened %.1f s ahead", turn, time.monotonic() - held.opened_at)
        return lane

    def close(self) -> None:
        """Cancel the held stream (session end, a voice switch)."""
        held, self._held = self._held, None
        if held is not None:
            _discard(held)

    async def _open(self, held: _Held) -> TtsLane | None:
        try:
            return await self._open_lane(held.turn, held.target)
        except BROKEN as exc:  # the reply opens its own stream and reports what fails then
            log.info("the TTS stream for turn %d could not be opened ahead: %s", held.turn, exc)
            return None


def _discard(held: _Held) -> None:
    """Cancel the stream, never half-close it (a half-close always ends in a zero Usage, a cancel rarely does)."""
    task = held.task
    if task is None:
        return
    if not task.done():
        task.cancel()  # TtsLane.open cancels a call it started
        task.add_done_callback(lambda t: _result(t) and _result(t).cancel())  # in case it opened meanwhile
    elif (lane := _result(task)) is not None:
        lane.cancel()


def _result(task: asyncio.Task | None) -> TtsLane | None:
    if task is None or not task.done() or task.cancelled() or task.exception() is not None:
        return None
    return task.result()


__all__ = ["WarmVoice"]
