"""Voice activity detection and endpointing at 16 kHz.

``SileroVad`` runs the Silero VAD v6 ONNX model that faster-whisper ships in
``faster_whisper/assets`` through onnxruntime. That export takes frames of 512
new samples (32 ms) preceded by the last 64 samples of the previous frame, and
the recurrent state ``h``/``c``; it has no sample-rate input. ``VadStream``
holds one audio stream's state; ``Endpointer`` turns frame probabilities into
utterance starts and ends (all positions are 16 kHz sample indices from the
start of the stream).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from voicemesh.errors import MissingExtra

log = logging.getLogger(__name__)

T = TypeVar("T")

RATE = 16000
FRAME = 512
CONTEXT = 64
FRAME_MS = FRAME * 1000 // RATE


def model_path() -> Path:
    """The Silero VAD ONNX file inside the installed faster-whisper package."""
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtra("faster_whisper", "stt")
    path = Path(next(iter(spec.submodule_search_locations))) / "assets" / "silero_vad_v6.onnx"
    if not path.exists():
        raise MissingExtra("faster_whisper (with assets/silero_vad_v6.onnx)", "stt")
    return path


@functools.cache
def shared_vad() -> SileroVad:
    """The one Silero model of the process (loaded on first use)."""
    return SileroVad()


class SileroVad:
    """One loaded Silero model, shared by every stream (onnxruntime sessions are thread-safe)."""

    def __init__(self, path: Path | None = None, threads: int = 1):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(path or model_path()), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def stream(self) -> VadStream:
        """Fresh state for one audio stream."""
        return VadStream(self)

    def run(self, frames: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Probabilities of ``frames`` [N, 576] in order, carrying the state; returns (probs, h, c)."""
        probs, h, c = self._session.run(None, {"input": frames, "h": h, "c": c})
        return np.asarray(probs, dtype=np.float32).reshape(-1), h, c


class VadStream:
    """Cuts a 16 kHz stream into 32 ms frames and scores each one."""

    def __init__(self, vad: SileroVad):
        self._vad = vad
        self._pending = np.zeros(0, dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)

    def completes_frame(self, count: int) -> bool:
        """Whether ``count`` more samples complete a frame (else ``process`` only buffers them: no model call)."""
        return len(self._pending) + count >= FRAME

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Probabilities of every frame completed by ``samples`` (possibly none)."""
        self._pending = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        count = len(self._pending) // FRAME
        if count == 0:
            return np.zeros(0, dtype=np.float32)
        new = self._pending[: count * FRAME].reshape(count, FRAME)
        self._pending = self._pending[count * FRAME :]
        previous = np.concatenate([self._context[None, :], new[:-1, -CONTEXT:]])
        frames = np.concatenate([previous, new], axis=1)
        self._context = new[-1, -CONTEXT:].copy()
        probs, self._h, self._c = self._vad.run(frames, self._h, self._c)
        return probs

    def flush(self) -> np.ndarray:
        """Score the last partial frame, padded with silence."""
        if len(self._pending) == 0:
            return np.zeros(0, dtype=np.float32)
        return self.process(np.zeros(FRAME - len(self._pending), dtype=np.float32))


class VadWorker:
    """Runs the VAD calls of every stream of the process on one thread, off the event loop.

    With ``asyncio.to_thread`` per call, the hop (an executor submit and one loop wake-up, a self-pipe
    write, per call) cost about as much as scoring a 32 ms frame, and a pool of threads scoring on two
    cores only took turns. Here the calls queue to one thread, and the results go back to each event loop
    in one wake-up for all the calls that finished meanwhile. A stream awaits each call before its next,
    so its frames stay in order.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._finished: dict[asyncio.AbstractEventLoop, list] = {}  # per loop: results not yet handed back
        self._thread: threading.Thread | None = None

    async def run(self, fn: Callable[..., T], *args) -> T:
        """``fn(*args)`` on the worker thread; its result (or exception) here."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="vad", daemon=True)
                self._thread.start()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put((loop, future, fn, args))
        return await future

    def _work(self) -> None:
        while True:
            loop, future, fn, args = self._jobs.get()
            try:
                outcome = (fn(*args), None)
            except BaseException as exc:  # handed to the caller, which raises it
                outcome = (None, exc)
            with self._lock:
                wake = loop not in self._finished
                self._finished.setdefault(loop, []).append((future, *outcome))
            if wake:
                try:
                    loop.call_soon_threadsafe(self._hand_back, loop)
                except RuntimeError:  # that loop is closed: nobody waits for these
                    with self._lock:
                        self._finished.pop(loop, None)

    def _hand_back(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            finished = self._finished.pop(loop, [])
        for future, result, exc in finished:
            if future.cancelled():
                continue
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)


@functools.cache
def vad_worker() -> VadWorker:
    """The one VAD thread of the process."""
    return VadWorker()


@dataclass(frozen=True)
class Boundary:
    """An utterance started (``started``) or ended at sample ``position``; ``start`` is the utterance's start."""

    started: bool
    position: int
    start: int


class Endpointer:
    """Turns frame probabilities into utterance boundaries.

    Speech starts at the first frame at or above ``threshold`` once speech
    has lasted ``min_speech_ms`` (so clicks do not open utterances); it ends
    at the end of the last frame above ``threshold - 0.15`` once
    ``min_silence_ms`` of quieter frames followed, or when the utterance
    reaches ``max_utterance_ms``.
    """

    def __init__(self, *, threshold: float, min_silence_ms: int, min_speech_ms: int = 90,
                 max_utterance_ms: int = 25000):
        self.threshold = threshold
        self.release = max(0.01, threshold - 0.15)
        self.min_silence = min_silence_ms * RATE // 1000
        self.min_speech = min_speech_ms * RATE // 1000
        self.max_utterance = max_utterance_ms * RATE // 1000
        self.position = 0  # start of the next frame
        self.in_speech = False
        self._candidate: int | None = None  # start of unconfirmed speech
        self._start = 0
        self._last_voiced_end = 0

    def feed(self, probs: np.ndarray) -> list[Boundary]:
        """Advance by one frame per probability; return the boundaries found."""
        found: list[Boundary] = []
        for prob in probs:
            start, end = self.position, self.position + FRAME
            self.position = end
            if not self.in_speech:
                self._idle_frame(float(prob), start, end, found)
                continue
            if prob >= self.release:
                self._last_voiced_end = end
            silence = end - self._last_voiced_end
            if silence >= self.min_silence or end - self._start >= self.max_utterance:
                found.append(self.end())
        return found

    def _idle_frame(self, prob: float, start: int, end: int, found: list[Boundary]) -> None:
        if self._candidate is None:
            if prob >= self.threshold:
                self._candidate = start
                self._last_voiced_end = end
        elif prob >= self.release:
            self._last_voiced_end = end
        else:
            self._candidate = None
        if self._candidate is not None and self._last_voiced_end - self._candidate >= self.min_speech:
            self.in_speech, self._start, self._candidate = True, self._candidate, None
            found.append(Boundary(True, self._start, self._start))

    def end(self, position: int | None = None) -> Boundary:
        """Close the open utterance (at ``position``, else after its last voiced frame)."""
        self.in_speech = False
        self._candidate = None
        return Boundary(False, self._last_voiced_end if position is None else position, self._start)

    @property
    def start(self) -> int:
        """Start of the open utterance."""
        return self._start

    @property
    def last_voiced_end(self) -> int:
        """End of the last voiced frame of the open utterance."""
        return self._last_voiced_end

    @property
    def pause(self) -> int:
        """Samples of silence since the last voiced frame of the open utterance (0 when idle)."""
        return self.position - self._last_voiced_end if self.in_speech else 0
