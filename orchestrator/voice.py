"""A local voice-activity detector for barge-in.

Turns come from the STT service's speech events. Barge-in must be faster than
that: on a busy machine the STT stream's speech_started can trail the audio
by half a second. While the agent talks, the session also runs the Silero VAD
the STT service uses (``voicemesh.speech.vad``, from the stt extra) on
the user's audio itself and interrupts once it has heard ``min_speech_ms`` of
voice; the STT events still decide whether the user said words. Without the
stt extra the session relies on the STT events alone.

The detector runs in its own task: the session hands it audio without
waiting, and it posts a ``VoiceHeard(epoch, start_ms)`` once per burst of speech
long enough to interrupt.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging

from voicemesh.audio import StreamResampler, pcm_to_float
from voicemesh.orchestrator.inbox import VoiceHeard

log = logging.getLogger(__name__)

THRESHOLD = 0.5  # a frame at or above this starts speech
RELEASE = 0.35  # frames at or above this continue it
GAP_MS = 200  # quieter frames that end a burst of speech


def available() -> bool:
    """Whether the VAD can run here (the stt extra is installed)."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "faster_whisper"))


class VoiceCounter:
    """Voiced time in the current burst of speech, from frame probabilities (pure logic)."""

    def __init__(self, frame_ms: float, min_speech_ms: float):
        self.frame_ms, self.min_speech_ms = frame_ms, min_speech_ms
        self.position = 0  # frames seen
        self.start: int | None = None  # first frame of the current burst
        self.voiced = self.quiet = 0
        self.reported = False

    def feed(self, probs) -> float | None:
        """The start (ms from the first frame) of a burst that just reached ``min_speech_ms`` of voice."""
        found = None
        for prob in probs:
            if self.start is None:
                if prob >= THRESHOLD:
                    self.start, self.voiced, self.quiet, self.reported = self.position, 1, 0, False
            elif prob >= RELEASE:
                self.voiced, self.quiet = self.voiced + 1, 0
            else:
                self.quiet += 1
                if self.quiet * self.frame_ms >= GAP_MS:
                    self.start = None
            if self.start is not None and not self.reported and self.voiced * self.frame_ms >= self.min_speech_ms:
                self.reported = True
                found = self.start * self.frame_ms
            self.position += 1
        return found


class SpeechDetector:
    """Barge-in detection on one session's user audio, as times on its audio timeline."""

    def __init__(self, rate: int, min_speech_ms: int, *, post, spawn):
        from voicemesh.speech.vad import FRAME, RATE, shared_vad, vad_worker

        self._vad, self._rate, self._vad_rate = shared_vad(), rate, RATE
        self._worker = vad_worker()  # the process's VAD thread
        self._frame_ms = FRAME * 1000 / RATE
        self.min_speech_ms = min_speech_ms
        self._post = post
        self._pending: list[bytes] = []
        self._wake = asyncio.Event()
        self.epoch = 0
        self._restart: float | None = 0.0
        spawn(self._run(), "vad")

    def reset(self, now_ms: float) -> None:
        """Listen afresh from session audio time ``now_ms`` (a reply starts); older results are stale."""
        self.epoch += 1
        self._pending.clear()
        self._restart = now_ms

    def feed(self, pcm: bytes) -> None:
        self._pending.append(pcm)
        self._wake.set()

    def skip(self, now_ms: float) -> None:
        """The audio up to session time ``now_ms`` is not listened to (its verdict would change nothing): the
        next audio fed starts a fresh listen there, on the same epoch."""
        self._pending.clear()
        self._restart = now_ms

    async def _run(self) -> None:
        stream = counter = resampler = None
        start_ms = 0.0
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._restart is not None:
                start_ms, self._restart = self._restart, None
                stream, resampler = self._vad.stream(), StreamResampler(self._rate, self._vad_rate)
                counter = VoiceCounter(self._frame_ms, self.min_speech_ms)
            epoch, audio = self.epoch, b"".join(self._pending)
            self._pending.clear()
            samples = resampler.process(pcm_to_float(audio))
            if stream.completes_frame(len(samples)):
                probs = await self._worker.run(stream.process, samples)
            else:
                probs = stream.process(samples)  # less than a frame: only buffered, no model call to move off the loop
            found = counter.feed(probs)
            if found is not None:
                self._post(VoiceHeard(epoch, start_ms + found))
