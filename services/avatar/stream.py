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
the frame after a ``Clear`` keeps the speech frame's early slot, so it is
idle and at most one interval away.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np

from voicemesh.errors import InvalidInput, ResourceExhausted
from voicemesh.services.avatar.backend import Animator, FrameInput, RenderOptions
from voicemesh.services.avatar.encoding import FrameEncoder

ANTICIPATION_S = 0.02  # the mouth takes a phoneme's shape slightly before it sounds


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
        self._buffer = np.zeros(0, np.float32)
        self._buffer_start = 0  # audio offset of _buffer[0]
        self._end: int | None = None  # end of the audio received so far
        self._reply_start: int | None = None  # audio offset of the reply being shown
        self._reply_frames = 0
        self._reply_ends: list[int] = []
        self._phonemes: list[PhonemePiece] = []
        self._clear = False
        self._early = False  # the frame after a Clear may go out early, as the speech frame it replaces would
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
                    self._phonemes.append(item)
                elif item is Control.REPLY_END:
                    self._reply_ends.append(self._end if self._reply_start is not None else -1)
                elif item is Control.CLEAR:
                    self._clear = True
                self._changed.set()
        except Exception as exc:  # raised again by the frame loop, which owns the stream
            self._error = exc
        finally:
            self._closed = True
            self._changed.set()

    def _add_audio(self, piece: AudioPiece) -> None:
        if self._end is not None and piece.offset < self._end:
            raise InvalidInput(f"audio offset_samples {piece.offset} is before the end of the audio already sent "
                               f"({self._end}); offsets only grow")
        samples = piece.samples
        if self._reply_start is None:
            self._reply_start, self._reply_frames = piece.offset, 0
            self._buffer, self._buffer_start = samples, piece.offset
        else:
            gap = piece.offset - self._end
            if gap > self.limits.max_gap_s * self.rate:
                raise InvalidInput(f"audio offset_samples {piece.offset} leaves a gap of {gap / self.rate:.1f} s "
                                   f"within a reply (at most {self.limits.max_gap_s:g} s); send ReplyEnd first")
            self._buffer = np.concatenate([self._buffer, np.zeros(gap, np.float32), samples])
        self._end = piece.offset + len(samples)
        self._received += len(samples)
        pending = (self._end - self._cursor()) / self.rate
        if pending > self.limits.max_pending_s:
            raise ResourceExhausted(f"{pending:.0f} s of audio wait to be shown (at most "
                                    f"{self.limits.max_pending_s:g} s); send audio closer to real time")

    # --- frame side ----------------------------------------------------------------------------------

    def _cursor(self, frames: int | None = None) -> int:
        """Audio offset where the reply's frame number ``frames`` (default: the next) starts."""
        k = self._reply_frames if frames is None else frames
        return (self._reply_start or 0) + k * self.rate // self.fps

    def _pts(self) -> int:
        return self.index * self.rate // self.fps

    def _speech_ready(self) -> bool:
        if self._reply_start is None or self._end is None:
            return False
        cursor = self._cursor()
        if cursor >= self._end:
            return False
        next_cursor = self._cursor(self._reply_frames + 1)
        ending = self._closed or any(end > cursor for end in self._reply_ends)
        return ending or self._end >= next_cursor + self.context

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
                if self._closed and not self._speech_ready():
                    break
                due = start + self.index * interval
                speech = self._speech_ready()
                if not self.paced and not speech:
                    await self._changed.wait()
                    continue
                early = speech or self._early
                wait = (due - interval if early else due) - self._clock() if self.paced else 0.0
                if wait > 0:
                    try:
                        await asyncio.wait_for(self._changed.wait(), wait)
                    except TimeoutError:
                        pass
                    continue
                self._early = False
                yield await self._render(speech)
            yield Finished(frames=self.index, audio_samples=self._received)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    def _mark(self) -> PlaybackFinished | None:
        """A PlaybackFinished due now (a Clear, or a reply whose audio has all been shown), else None."""
        if self._clear:
            self._clear = False
            shown = self._end or 0
            if self._reply_start is not None:
                shown = min(self._cursor(), self._end)
            self._reply_start, self._reply_ends, self._phonemes = None, [], []
            self._buffer = np.zeros(0, np.float32)
            self.animator.clear()
            self._early = True
            return PlaybackFinished(audio_offset=shown, pts=self._pts(), interrupted=True)
        if self._reply_ends and (self._reply_start is None or self._cursor() >= self._reply_ends[0]):
            end = self._reply_ends.pop(0)
            return self._finish_reply(end if end >= 0 else (self._end or 0))
        if self._closed and self._reply_start is not None and self._cursor() >= self._end:
            return self._finish_reply(self._end)  # a half-close ends the last reply
        return None

    def _finish_reply(self, end: int) -> PlaybackFinished:
        if not self._reply_ends and (self._reply_start is None or self._cursor() >= self._end):
            self._reply_start = None  # the next audio starts a new reply on the next free frame
        return PlaybackFinished(audio_offset=end, pts=self._pts(), interrupted=False)

    async def _render(self, speech: bool) -> Frame:
        frame_input = FrameInput(time_s=self.index / self.fps)
        audio_offset = -1
        if speech:
            audio_offset = self._cursor()
            next_cursor = self._cursor(self._reply_frames + 1)
            frame_input = FrameInput(time_s=frame_input.time_s, audio=self._window(audio_offset, next_cursor),
                                     context=self.context, phoneme=self._phoneme(audio_offset, next_cursor))
            self._reply_frames += 1
            self._trim(next_cursor - self.context)
        picture, encoded = await asyncio.to_thread(self._draw, frame_input)
        frame = Frame(index=self.index, pts=self._pts(), audio_offset=audio_offset, data=encoded.data,
                      keyframe=encoded.keyframe, mouth_open=picture.mouth_open)
        self.index += 1
        return frame

    def _draw(self, frame_input: FrameInput):
        picture = self.animator.render(frame_input)
        return picture, self.encoder.encode(picture.rgb)

    def _window(self, start: int, end: int) -> np.ndarray:
        """Audio [start - context, end + context), zeros where none was received."""
        lo, hi = start - self.context, end + self.context
        out = np.zeros(hi - lo, np.float32)
        a, b = max(lo, self._buffer_start), min(hi, self._buffer_start + len(self._buffer))
        if a < b:
            out[a - lo : b - lo] = self._buffer[a - self._buffer_start : b - self._buffer_start]
        return out

    def _trim(self, keep_from: int) -> None:
        drop = keep_from - self._buffer_start
        if drop > 0:
            self._buffer = self._buffer[drop:]
            self._buffer_start = keep_from

    def _phoneme(self, start: int, end: int) -> str:
        at = (start + end) // 2 + int(ANTICIPATION_S * self.rate)
        self._phonemes = [p for p in self._phonemes if p.end > start]
        for piece in self._phonemes:
            if piece.start <= at < piece.end:
                return piece.phoneme
        return ""
