"""One Render stream as plain values: agent audio and controls in, frames and marks out.

Two clocks meet here. The stream clock counts frames from the start of the
stream (``pts`` in samples at the stream's rate) and, unless the stream is
unpaced, advances in real time: frame ``k`` is due ``k / fps`` seconds after
the stream opened, whether it shows speech or idle motion, so the video never
freezes. The audio clock is the agent-audio offset the client sends; each
speech frame says which offset it starts at. A reply's audio is laid on the
next free frame, and its frames step through the audio by exactly
``rate / fps`` samples. Speech frames may go out one frame interval early
(that is all the lookahead the mouth needs), idle frames go out when due;
the frame after a ``Clear`` goes out at once: it is idle and its pts is the
next frame slot, at most one interval after the last speech frame.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np

from voicemesh.errors import InvalidInput, ResourceExhausted
from voicemesh.services.avatar.backend import Animator, FrameInput, RenderOptions
from voicemesh.services.avatar.encoding import FrameEncoder

ANTICIPATION_S = 0.02  # the mouth takes a phoneme's shape slightly before it sounds
MAX_PENDING_PHONEMES = 20_000  # about 20 minutes of speech; bounds what a client can make the stream hold


@dataclass(frozen=True)
class AudioPiece:
    """Agent audio (float32 mono) starting at ``offset`` on the audio clock."""

    samples: np.ndarray
    offset: int


@dataclass(frozen=True)
class PhonemePiece:
    """A phoneme spanning [start, end) on the audio clock."""

    phoneme: str
    start: int
    end: int


class Control(Enum):
    """Controls of a Render stream."""

    REPLY_END = "reply_end"
    CLEAR = "clear"


Input = AudioPiece | PhonemePiece | Control


@dataclass(frozen=True)
class Frame:
    """A rendered frame; ``audio_offset`` is -1 for an idle frame."""

    index: int
    pts: int
    audio_offset: int
    data: bytes
    keyframe: bool
    mouth_open: float

    @property
    def idle(self) -> bool:
        return self.audio_offset < 0


@dataclass(frozen=True)
class PlaybackFinished:
    """A reply was shown up to ``audio_offset`` (or cut there by a Clear)."""

    audio_offset: int
    pts: int
    interrupted: bool


@dataclass(frozen=True)
class Finished:
    """The stream ended: frames sent and agent audio received."""

    frames: int
    audio_samples: int


Event = Frame | PlaybackFinished | Finished


@dataclass(frozen=True)
class StreamLimits:
    """Bounds of one stream."""

    max_pending_s: float = 120.0  # audio received but not shown yet
    max_gap_s: float = 10.0  # silence a jump in offsets may insert within a reply
    context_s: float = 0.02  # audio analysed on each side of a frame


class Reply:
    """One reply's audio on the audio clock: received samples, how many frames showed them, whether it ended."""

    def __init__(self, start: int):
        self.start = start
        self.end = start  # end of the audio received (exclusive)
        self.buffer = np.zeros(0, np.float32)
        self.buffer_start = start  # audio offset of buffer[0]; shown audio is trimmed away
        self.frames = 0
        self.ended = False

    def cursor(self, rate: int, fps: int, frames: int | None = None) -> int:
        """Audio offset where frame number ``frames`` (default: the next) of the reply starts."""
        return self.start + (self.frames if frames is None else frames) * rate // fps

    def append(self, samples: np.ndarray, offset: int) -> None:
        gap = np.zeros(offset - self.end, np.float32)
        self.buffer = np.concatenate([self.buffer, gap, samples])
        self.end = offset + len(samples)


class RenderStream:
    """Runs one stream: a reader task takes inputs, the frame loop renders them on time."""

    def __init__(self, animator: Animator, encoder: FrameEncoder, options: RenderOptions, *,
                 paced: bool = True, limits: StreamLimits = StreamLimits(),
                 clock: Callable[[], float] | None = None):
        self.animator, self.encoder, self.options = animator, encoder, options
        self.paced, self.limits = paced, limits
        self.rate, self.fps = options.sample_rate_hz, options.fps
        self.context = int(limits.context_s * self.rate)
        self._clock = clock or asyncio.get_running_loop().time
        self._changed = asyncio.Event()
        self._replies: deque[Reply] = deque()  # the first is being shown; the others wait their turn
        self._end = 0  # end of all audio received (offsets never go below it)
        self._phonemes: list[PhonemePiece] = []
        self._clear = False
        # The frame after a Clear goes out at once: the speech frame it replaces may already have been one
        # interval early, and the client should see the mouth stop now, not one or two intervals later.
        self._after_clear = False
        self._closed = False
        self._error: BaseException | None = None
        self._received = 0
        self.index = 0

    # --- input side ----------------------------------------------------------------------------------

    async def _read(self, inputs: AsyncIterator[Input]) -> None:
        try:
            async for item in inputs:
                if isinstance(item, AudioPiece):
                    self._add_audio(item)
                elif isinstance(item, PhonemePiece):
                    if len(self._phonemes) >= MAX_PENDING_PHONEMES:
                        raise ResourceExhausted(f"{len(self._phonemes)} phonemes wait for their audio (at most "
                                                f"{MAX_PENDING_PHONEMES}); send them with the audio they time")
                    self._phonemes.append(item)
                elif item is Control.REPLY_END:
                    if not self._replies or self._replies[-1].ended:
                        self._replies.append(Reply(self._end))  # an empty reply still gets its mark, in order
                    self._replies[-1].ended = True
                elif item is Control.CLEAR:
                    self._clear = True
                self._changed.set()
        except Exception as exc:  # raised again by the frame loop, which owns the stream
            self._error = exc
        finally:
            self._closed = True
            self._changed.set()

    def _add_audio(self, piece: AudioPiece) -> None:
        if piece.offset < self._end:
            raise InvalidInput(f"audio offset_samples {piece.offset} is before the end of the audio already sent "
                               f"({self._end}); offsets only grow")
        if not self._replies or self._replies[-1].ended:
            self._replies.append(Reply(piece.offset))  # after a ReplyEnd, audio starts the next reply
        reply = self._replies[-1]
        gap = piece.offset - reply.end
        if gap > self.limits.max_gap_s * self.rate:
            raise InvalidInput(f"audio offset_samples {piece.offset} leaves a gap of {gap / self.rate:.1f} s "
                               f"within a reply (at most {self.limits.max_gap_s:g} s); send ReplyEnd first")
        reply.append(piece.samples, piece.offset)
        self._end = reply.end
        self._received += len(piece.samples)
        pending = sum(len(r.buffer) for r in self._replies) / self.rate
        if pending > self.limits.max_pending_s:
            raise ResourceExhausted(f"{pending:.0f} s of audio wait to be shown (at most "
                                    f"{self.limits.max_pending_s:g} s); send audio closer to real time")

    # --- frame side ----------------------------------------------------------------------------------

    def _pts(self) -> int:
        return self.index * self.rate // self.fps

    def _speech_ready(self) -> bool:
        if not self._replies:
            return False
        reply = self._replies[0]
        cursor = reply.cursor(self.rate, self.fps)
        if cursor >= reply.end:
            return False
        after = reply.cursor(self.rate, self.fps, reply.frames + 1)
        return reply.ended or self._closed or reply.end >= after + self.context

    async def run(self, inputs: AsyncIterator[Input]) -> AsyncIterator[Event]:
        reader = asyncio.create_task(self._read(inputs))
        start = self._clock()
        interval = 1.0 / self.fps
        try:
            while True:
                self._changed.clear()
                if self._error is not None:
                    raise self._error
                mark = self._mark()
                if mark is not None:
                    yield mark
                    continue
                speech = self._speech_ready()
                if self._closed and not speech:
                    break
                if not self.paced and not speech:
                    await self._changed.wait()
                    continue
                due = start + self.index * interval
                lead = 2 * interval if self._after_clear else interval if speech else 0.0
                wait = due - lead - self._clock() if self.paced else 0.0
                if wait > 0:
                    try:
                        await asyncio.wait_for(self._changed.wait(), wait)
                    except TimeoutError:
                        pass
                    continue
                self._after_clear = False
                yield await self._render(speech)
            yield Finished(frames=self.index, audio_samples=self._received)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    def _mark(self) -> PlaybackFinished | None:
        """A PlaybackFinished due now (a Clear, or a reply whose audio has all been shown), else None."""
        if self._clear:
            self._clear = False
            shown = self._end
            if self._replies:
                reply = self._replies[0]
                shown = min(reply.cursor(self.rate, self.fps), reply.end)
            self._replies.clear()
            self._phonemes = []
            self.animator.clear()
            self._after_clear = True
            return PlaybackFinished(audio_offset=shown, pts=self._pts(), interrupted=True)
        if self._replies:
            reply = self._replies[0]
            if (reply.ended or self._closed) and reply.cursor(self.rate, self.fps) >= reply.end:
                self._replies.popleft()  # a half-close ends the last reply too
                return PlaybackFinished(audio_offset=reply.end, pts=self._pts(), interrupted=False)
        return None

    async def _render(self, speech: bool) -> Frame:
        frame_input = FrameInput(time_s=self.index / self.fps)
        audio_offset = -1
        if speech:
            reply = self._replies[0]
            audio_offset = reply.cursor(self.rate, self.fps)
            after = reply.cursor(self.rate, self.fps, reply.frames + 1)
            frame_input = FrameInput(time_s=frame_input.time_s, audio=self._window(reply, audio_offset, after),
                                     context=self.context, phoneme=self._phoneme(audio_offset, after))
            reply.frames += 1
            self._trim(reply, after - self.context)
        picture, encoded = await asyncio.to_thread(self._draw, frame_input)
        frame = Frame(index=self.index, pts=self._pts(), audio_offset=audio_offset, data=encoded.data,
                      keyframe=encoded.keyframe, mouth_open=picture.mouth_open)
        self.index += 1
        return frame

    def _draw(self, frame_input: FrameInput):
        picture = self.animator.render(frame_input)
        return picture, self.encoder.encode(picture.rgb)

    def _window(self, reply: Reply, start: int, end: int) -> np.ndarray:
        """The reply's audio [start - context, end + context), zeros where none was received."""
        lo, hi = start - self.context, end + self.context
        out = np.zeros(hi - lo, np.float32)
        a, b = max(lo, reply.buffer_start), min(hi, reply.buffer_start + len(reply.buffer))
        if a < b:
            out[a - lo : b - lo] = reply.buffer[a - reply.buffer_start : b - reply.buffer_start]
        return out

    @staticmethod
    def _trim(reply: Reply, keep_from: int) -> None:
        drop = keep_from - reply.buffer_start
        if drop > 0:
            reply.buffer = reply.buffer[drop:]
            reply.buffer_start = keep_from

    def _phoneme(self, start: int, end: int) -> str:
        at = (start + end) // 2 + int(ANTICIPATION_S * self.rate)
        self._phonemes = [p for p in self._phonemes if p.end > start]
        for piece in self._phonemes:
            if piece.start <= at < piece.end:
                return piece.phoneme
        return ""
