"""End of turn from a model: Smart Turn v3 on the user's last seconds of audio.

Smart Turn v3 (pipecat-ai, BSD-2) is an ONNX classifier shipped inside the
``pipecat-ai`` wheel. Its input ``input_features`` [batch, 80, 800] is a
Whisper log-mel spectrogram (80 bins, 10 ms hop) of exactly 8 s of 16 kHz
audio: the last 8 s of the utterance, zero-padded at the front when shorter,
the waveform normalized to zero mean and unit variance first. Its output
``logits`` [batch, 1] is already a probability that the speaker has finished.
The features come from faster-whisper's own extractor (the stt extra), so no
code of the framework is imported: the file is found with ``find_spec``.

``smart.SmartTurnDetector`` combines that probability with the transcript's
look into the silence to wait before the turn ends.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
from pathlib import Path

import numpy as np

from voicemesh.audio import StreamResampler, pcm_to_float
from voicemesh.errors import MissingExtra

log = logging.getLogger(__name__)

RATE = 16000
WINDOW_S = 8


def model_path() -> Path:
    """The Smart Turn v3 ONNX file inside the installed pipecat-ai wheel (without importing pipecat)."""
    spec = importlib.util.find_spec("pipecat")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtra("pipecat-ai", "turn")
    folder = Path(next(iter(spec.submodule_search_locations))) / "audio" / "turn" / "smart_turn" / "data"
    found = sorted(folder.glob("smart-turn-v3*.onnx"))
    if not found:
        raise MissingExtra("pipecat-ai (with smart-turn-v3*.onnx)", "turn")
    return found[-1]  # the newest version the wheel ships


def available() -> bool:
    """Whether the model and what runs it are installed (pipecat-ai, onnxruntime, faster-whisper)."""
    if any(importlib.util.find_spec(m) is None for m in ("onnxruntime", "faster_whisper")):
        return False
    try:
        model_path()
    except MissingExtra:
        return False
    return True


class SmartTurn:
    """One loaded Smart Turn model; ``probability`` is thread-safe (onnxruntime sessions are)."""

    def __init__(self, path: Path | None = None, threads: int = 1):
        import onnxruntime
        from faster_whisper.feature_extractor import FeatureExtractor

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.path = path or model_path()
        self._session = onnxruntime.InferenceSession(str(self.path), sess_options=options,
                                                     providers=["CPUExecutionProvider"])
        shape = self._session.get_inputs()[0].shape  # [batch, mel bins, frames]
        self.mel_bins, self.frames = int(shape[1]), int(shape[2])
        self._features = FeatureExtractor(feature_size=self.mel_bins, sampling_rate=RATE, chunk_length=WINDOW_S)
        self.samples = self.frames * self._features.hop_length  # 8 s

    def features(self, samples: np.ndarray) -> np.ndarray:
        """The model's input [mel bins, frames] for the end of ``samples`` (float, 16 kHz)."""
        window = np.asarray(samples[-self.samples:], dtype=np.float32)
        window = np.pad(window, (self.samples - len(window), 0))
        window = (window - window.mean()) / np.sqrt(window.var() + 1e-7)
        return self._features(window, padding=0)[:, -self.frames:].astype(np.float32)

    def probability(self, samples: np.ndarray) -> float:
        """How likely the speaker finished their turn at the end of ``samples`` (blocking: call in a thread)."""
        if len(samples) == 0:
            return 0.0
        (out,) = self._session.run(None, {"input_features": self.features(samples)[None]})
        return float(np.clip(np.asarray(out).reshape(-1)[0], 0.0, 1.0))

    async def predict(self, samples: np.ndarray) -> float:
        """``probability`` off the event loop."""
        return await asyncio.to_thread(self.probability, samples)


@functools.cache
def shared_smart_turn() -> SmartTurn:
    """The one Smart Turn model of the process (loaded on first use)."""
    model = SmartTurn()
    log.info("smart turn model %s loaded", model.path.name)
    return model


class RecentAudio:
    """The last seconds of a session's user audio at 16 kHz, addressed by the audio timeline (ms)."""

    def __init__(self, rate: int, seconds: float = WINDOW_S + 2):
        self._resampler = StreamResampler(rate, RATE) if rate != RATE else None
        self._keep = int(seconds * RATE)
        self._parts: list[np.ndarray] = []
        self._held = 0  # samples in _parts
        self.end = 0  # 16 kHz samples received

    def feed(self, pcm: bytes) -> None:
        samples = pcm_to_float(pcm)
        if self._resampler is not None:
            samples = self._resampler.process(samples)
        self._parts.append(samples)
        self._held += len(samples)
        self.end += len(samples)
        while self._parts and self._held - len(self._parts[0]) >= self._keep:
            self._held -= len(self._parts.pop(0))  # whole chunks only: no copy per chunk

    def until(self, end_ms: float, since_ms: float | None = None) -> np.ndarray:
        """The audio kept (at most ``seconds``) up to timeline position ``end_ms``, from ``since_ms`` if given."""
        joined = np.concatenate(self._parts) if self._parts else np.zeros(0, dtype=np.float32)
        stop = len(joined) - max(0, self.end - int(end_ms * RATE / 1000))
        start = stop - self._keep
        if since_ms is not None:
            start = max(start, len(joined) - (self.end - int(max(0.0, since_ms) * RATE / 1000)))
        return joined[max(0, start): max(0, stop)]
