"""Mouth shapes from the agent's audio, or from TTS phonemes when they are given.

Neither lip-sync library on PyPI fits a live stream (see docs/avatars.md):
``pylipsync`` needs librosa, scipy and numpy < 2.4 (VoiceMesh runs 2.4), and
``openfacefx``'s audio-only path normalizes against the whole recording, which
a stream never has. So the audio path is a small spectral analysis in numpy,
the same idea SALSA and uLipSync build on: loudness sets how far the jaw
opens; where the energy sits in the spectrum tells an open vowel (low first
formant), a spread vowel (high second formant, /i/ /e/), a rounded one (low
centroid, /o/ /u/) and a fricative (energy above 3 kHz, teeth showing).

Co-articulation: the analysis window reaches ``context`` samples past the
frame, so the mouth starts to open before a sound (anticipation), and each
channel eases towards its target with a fast attack and a slower release, so
neighbouring sounds blend instead of snapping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GATE_DB = -50.0  # below this (dBFS) a window is silence
START_PEAK_DB = -20.0  # assumed loudness of speech before any has been heard
MIN_PEAK_DB = -34.0  # quiet speech still opens the mouth fully, noise does not
PEAK_DECAY_DB_PER_S = 3.0  # the loudness reference follows a voice that gets quieter


@dataclass(frozen=True)
class MouthShape:
    """How the mouth looks: ``open`` 0..1, ``width`` -1 (rounded) .. 1 (spread), ``teeth`` 0..1."""

    open: float = 0.0
    width: float = 0.0
    teeth: float = 0.0


REST = MouthShape()

# Phoneme -> (open, width, teeth). IPA symbols and ARPAbet (stress digits dropped).
_SHAPES: dict[str, tuple[float, float, float]] = {}
for _names, _shape in (
    ("a ɑ æ ɐ ʌ aɪ aʊ AA AE AH AY AW", (0.9, 0.15, 0.1)),
    ("e ɛ eɪ EH EY", (0.6, 0.6, 0.3)),
    ("i ɪ j IY IH Y", (0.35, 1.0, 0.5)),
    ("o ɔ oʊ ɔɪ ɒ OW AO OY", (0.65, -0.7, 0.0)),
    ("u ʊ w UW UH W", (0.3, -1.0, 0.0)),
    ("ə ɚ ɜ ɝ ER AX", (0.45, 0.0, 0.1)),
    ("m b p M B P", (0.0, 0.0, 0.0)),
    ("f v F V", (0.15, 0.2, 0.9)),
    ("θ ð TH DH", (0.2, 0.1, 0.7)),
    ("s z ʃ ʒ tʃ dʒ S Z SH ZH CH JH", (0.2, 0.4, 1.0)),
    ("t d n l k g ŋ h ɹ r ɾ T D N L K G NG HH R", (0.35, 0.1, 0.3)),
):
    for _name in _names.split():
        _SHAPES[_name] = _shape
_SILENT = {"", "_", "sil", "SIL", "pau", "sp", " "}


def phoneme_shape(phoneme: str) -> MouthShape | None:
    """The mouth shape of a phoneme (REST for a pause), or None when the symbol is unknown."""
    name = phoneme.strip()
    if name in _SILENT:
        return REST
    shape = _SHAPES.get(name) or _SHAPES.get(name.upper().rstrip("012"))
    return MouthShape(*shape) if shape else None


class MouthTracker:
    """Per-stream analysis and smoothing: one call per frame, in order."""

    def __init__(self, *, sample_rate_hz: int, fps: int, attack_s: float = 0.03, release_s: float = 0.07):
        self.rate = sample_rate_hz
        self.dt = 1.0 / fps
        self._attack = 1.0 - math.exp(-self.dt / attack_s)
        self._release = 1.0 - math.exp(-self.dt / release_s)
        self._shape_rate = 1.0 - math.exp(-self.dt / 0.05)
        self._peak_db = START_PEAK_DB
        self.shape = REST

    def clear(self) -> None:
        """Start the next reply from a closed mouth (the loudness reference is kept)."""
        self.shape = REST

    def step(self, audio: np.ndarray | None, phoneme: str = "") -> MouthShape:
        """The smoothed shape of the next frame; ``audio`` None relaxes towards rest."""
        target = REST if audio is None else self.target(audio, phoneme)
        current = self.shape
        rate = self._attack if target.open > current.open else self._release
        shape = MouthShape(
            open=current.open + (target.open - current.open) * rate,
            width=current.width + (target.width - current.width) * self._shape_rate,
            teeth=current.teeth + (target.teeth - current.teeth) * self._shape_rate,
        )
        if target == REST and max(shape.open, abs(shape.width), shape.teeth) < 0.01:
            shape = REST  # settle exactly, so a silent mouth is pixel-still rather than creeping forever
        self.shape = shape
        return shape

    def target(self, audio: np.ndarray, phoneme: str = "") -> MouthShape:
        """The unsmoothed shape for a window of float32 audio."""
        if not len(audio):
            return REST
        level_db = 10.0 * math.log10(float(np.mean(np.square(audio, dtype=np.float64))) + 1e-12)
        self._peak_db = max(level_db, self._peak_db - PEAK_DECAY_DB_PER_S * self.dt, MIN_PEAK_DB)
        loud = min(1.0, max(0.0, (level_db - GATE_DB) / (self._peak_db - GATE_DB))) ** 1.5
        from_phoneme = phoneme_shape(phoneme) if phoneme else None
        if from_phoneme is not None:  # TTS said what is spoken: the audio only scales the opening
            return MouthShape(open=from_phoneme.open * (0.4 + 0.6 * loud) if loud > 0 else 0.0,
                              width=from_phoneme.width, teeth=from_phoneme.teeth)
        if loud <= 0.0:
            return REST
        low, mid, high, centroid = self._bands(audio)
        total = low + mid + high + 1e-12
        fricative = high / total
        width = min(1.0, max(-1.0, (centroid - 1100.0) / 600.0))
        opening = loud * (1.0 - 0.7 * fricative) * (0.75 + 0.25 * low / total)
        return MouthShape(open=min(1.0, opening), width=width, teeth=min(1.0, 1.6 * fricative))

    def _bands(self, audio: np.ndarray) -> tuple[float, float, float, float]:
        size = 1 << max(8, (len(audio) - 1).bit_length())
        power = np.abs(np.fft.rfft(audio * np.hanning(len(audio)), size)) ** 2
        freqs = np.fft.rfftfreq(size, 1.0 / self.rate)
        low = float(power[(freqs >= 150) & (freqs < 900)].sum())
        mid = float(power[(freqs >= 900) & (freqs < 2500)].sum())
        high = float(power[(freqs >= 3000) & (freqs < 8000)].sum())
        voiced = (freqs >= 150) & (freqs < 4000)
        centroid = float((freqs[voiced] * power[voiced]).sum() / (power[voiced].sum() + 1e-12))
        return low, mid, high, centroid
