"""The session's ear: one STT Recognize stream, with fallback to the next STT target.

Audio goes to the current stream through its ``AudioPump``. Events are posted to the session's queue tagged with the
stream, so events of a replaced stream are ignored.
After a failover the new stream gets the audio since the last utterance
ended (at most ``REPLAY_S``) again, and its times are shifted to the
session's audio timeline.

When no STT target answers (the one service was killed and is being
restarted), the session does not end: the listener keeps the audio and tries
every target again in the background (``_reconnect``). Whichever comes back
first gets the replay, so the user's words are not lost. If none is back
within ``RECONNECT_S`` the session is told (``SttLost``: an error event) and
the listener goes on trying, more slowly, for as long as the session lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging

import grpc

from voicemesh.orchestrator.clients import MeshClients
from voicemesh.errors import VoiceMeshError
from voicemesh.orchestrator.fallback import REFUSALS, FallbackLog, Target
from voicemesh.orchestrator.inbox import SttEnded, SttEvent, SttFailed, SttLost
from voicemesh.orchestrator.lanes import BROKEN, AudioPump, SttLane, closed_for_idling

log = logging.getLogger(__name__)

REPLAY_S = 30.0
RECONNECT_S = 10.0  # how long a session waits for an STT to come back before it says so (it keeps trying)
RETRY_S = (0.25, 0.5, 1.0, 2.0)  # pauses between tries while none answers (the last one repeats)


class Listener:
    """The current STT stream of a session."""

    def __init__(self, clients: MeshClients, metadata, *, rate: int, min_silence_ms: int, post, spawn, now):
        self.clients, self.metadata = clients, metadata
        self._now = now  # ms of user audio the session has received
        self.rate, self.min_silence_ms = rate, min_silence_ms
        self._post, self._spawn = post, spawn  # put an event on the session's queue; start an owned task
        self.lane: SttLane | None = None
        self.offset_ms = 0.0  # session audio time of the current stream's time 0
        self.fallbacks = FallbackLog()
        self.ended = False
        self._replay: list[bytes] = []
        self._replay_bytes = 0
        self._pump: AudioPump | None = None  # writes the audio to the current stream
        self._ending = False  # no more audio comes: every stream from now on is half-closed once written
        self._reconnecting: asyncio.Task | None = None  # tries the targets again while none answers
        self.on_lost = None  # callback(lane): a stream broke, maybe with its Usage unsent (for billing)

    @property
    def model(self) -> str:
        return self.lane.target.descriptor if self.lane is not None else ""

    async def open(self, order: list[Target], *, now_ms: float, replay: bool = False) -> None:
        """Open the first target of ``order`` that takes a stream (NOT fatal per target; if none does, their common refusal or UNAVAILABLE)."""
        audio = b"".join(self._replay) if replay else b""
        for target in order:
            try:
                lane = await SttLane.open(self.clients, target, self.metadata, rate=self.rate,
                                          min_silence_ms=self.min_silence_ms)
                await self._write(lane, audio)
            except BROKEN as exc:
                self.fallbacks.failed(target, exc)
                continue
            old, self.lane, self.ended = self.lane, lane, False
            left = self._pump.stop() if self._pump is not None else b""  # audio the old stream did not get
            # The new stream's time 0 is the first sample it gets: the replay, then what waits to be written.
            self.offset_ms = now_ms - (len(audio) + len(left)) / 2 * 1000 / self.rate
            if replay:  # audio that came after ``now_ms``, while the replay was written (the session went on)
                left += b"".join(self._replay)[len(audio):]
            self._spawn(self._read(lane), "stt")
            self._pump = AudioPump(lane.audio, lane.done_writing, step=self.rate * 2, spawn=self._spawn,
                                   name="stt-writer")  # at most a second per message
            self._pump.put(left)
            if self._ending:
                self._pump.end()
            if old is not None:
                with contextlib.suppress(*BROKEN):
                    await old.done_writing()  # it finishes its utterance and reports usage
            return
        # Every target refused the same way (a used-up quota, a revoked key): that status, not UNAVAILABLE.
        raise self.fallbacks.exhausted("no speech-to-text service answered")

    async def _write(self, lane: SttLane, pcm: bytes) -> None:
        step = self.rate * 2  # at most a second per message
        for start in range(0, len(pcm), step):
            await lane.audio(pcm[start:start + step])

    def audio(self, pcm: bytes) -> None:
        """Queue user audio for the current stream (and keep it for a replay)."""
        self._replay.append(pcm)
        self._replay_bytes += len(pcm)
        while self._replay_bytes > REPLAY_S * self.rate * 2 and len(self._replay) > 1:
            self._replay_bytes -= len(self._replay.pop(0))
        if self._pump is not None:
            self._pump.put(pcm)

    def utterance_done(self) -> None:
        """Audio before now need not be replayed."""
        self._replay, self._replay_bytes = [], 0

    async def close(self) -> None:
        """Stop listening (the session goes on a realtime model): the stream finishes its utterance and
        reports its usage; ``open`` starts a new one."""
        lane, self.lane = self.lane, None
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        if self._pump is not None:
            self._pump.stop()
            self._pump = None
        self._replay, self._replay_bytes = [], 0
        if lane is not None:
            with contextlib.suppress(*BROKEN):
                await lane.done_writing()

    def end(self) -> None:
        """No more audio: the stream gets what is queued, then the half-close."""
        self._ending = True
        if self._pump is not None:
            self._pump.end()

    async def _read(self, lane: SttLane) -> None:
        try:
            async for response in lane.responses():
                self._post(SttEvent(lane, response))
            self._post(SttEnded(lane))
        except grpc.aio.AioRpcError as exc:
            self._post(SttFailed(lane, exc))

    async def failed(self, lane: SttLane, exc: BaseException, targets: list[Target], now_ms: float) -> None:
        """The current stream broke: go on with the next target, replaying the open utterance. A stream the
        service closed for idling (no audio came: a text-only client) is opened again on the same target.
        When no other target answers, every target is tried again in the background until one is back; only a
        refusal of the request itself (a used-up quota, a revoked key) ends the session."""
        idle = closed_for_idling(exc)
        if not idle:
            self.fallbacks.failed(lane.target, exc)
            if self.on_lost is not None and self.fallbacks.codes[-1] not in REFUSALS:
                self.on_lost(lane)  # it died (not refused): what it got is billed from what was sent
        self.lane = None
        if self._pump is not None:
            self._pump.stop()  # what it did not write is in the replay
            self._pump = None
        try:
            await self.open(targets if idle else [t for t in targets if t != lane.target], now_ms=now_ms,
                            replay=True)
        except VoiceMeshError as error:
            if error.code in REFUSALS:
                raise
            log.warning("no STT service answers (%s): listening again as soon as one is back", error.message)
            self._reconnecting = self._spawn(self._reconnect(targets, error), "stt-reconnect")

    async def _reconnect(self, targets: list[Target], error: VoiceMeshError) -> None:
        """Try every target until one takes the stream (the replay with it); say so past ``RECONNECT_S``."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + RECONNECT_S
        reported = False
        try:
            for attempt in itertools.count():
                await asyncio.sleep(RETRY_S[min(attempt, len(RETRY_S) - 1)])
                if self.lane is not None:
                    return
                entries, codes = list(self.fallbacks.entries), list(self.fallbacks.codes)
                try:
                    await self.open(targets, now_ms=self._now(), replay=True)
                    log.info("STT %s answers again: listening (%.1f s of audio replayed)", self.lane.target,
                             self._replay_bytes / 2 / self.rate)
                    return
                except VoiceMeshError as exc:
                    error = exc
                    # The turn's metrics name the failure once, not every try of a long outage.
                    self.fallbacks.entries, self.fallbacks.codes = entries, codes
                if not reported and loop.time() >= give_up_at:
                    reported = True
                    if self._ending:  # the client is gone: nothing more to hear
                        self.ended = True
                    self._post(SttLost(error))
                    if self._ending:
                        return
        finally:
            self._reconnecting = None

    def take_fallbacks(self) -> list[str]:
        entries, self.fallbacks = self.fallbacks.entries, FallbackLog()
        return entries

    def cancel(self) -> None:
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        if self.lane is not None:
            self.lane.cancel()
