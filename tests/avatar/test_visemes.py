"""Mouth shapes as plain values: the phoneme table, attack and release, the spectrum, and a mouth that settles."""

from __future__ import annotations

import numpy as np

from voicemesh.services.avatar.visemes import REST, MouthTracker, phoneme_shape


def tone(seconds: float, hz: float, level: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (level * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_phoneme_table_reads_ipa_and_arpabet():
    assert phoneme_shape("AA1") == phoneme_shape("ɑ") and phoneme_shape("AA1").open > 0.8
    assert phoneme_shape("m").open == 0.0 and phoneme_shape("B") == phoneme_shape("m")
    assert phoneme_shape("IY0").width == 1.0 and phoneme_shape("uw").width == -1.0
    assert phoneme_shape("s").teeth == 1.0
    assert phoneme_shape("sil") == REST and phoneme_shape("") == REST
    assert phoneme_shape("☃") is None


def test_loud_opens_fast_and_silence_closes_slower_then_exactly():
    tracker = MouthTracker(sample_rate_hz=16000, fps=25)
    loud = tone(0.08, 300, 0.3)
    opening = [tracker.step(loud).open for _ in range(3)]
    assert opening[0] > 0.5 and opening == sorted(opening)
    closing = [tracker.step(None).open for _ in range(40)]
    assert closing[0] > 0.3  # the release is slower than the attack: neighbouring sounds blend
    assert closing == sorted(closing, reverse=True) and tracker.shape == REST


def test_spectrum_tells_rounded_from_spread_and_fricatives_show_teeth():
    tracker = MouthTracker(sample_rate_hz=16000, fps=25)
    low = tracker.target(tone(0.08, 400, 0.3))
    high = tracker.target(tone(0.08, 2000, 0.3))
    hiss = tracker.target(np.random.default_rng(0).normal(0, 0.05, 1280).astype(np.float32) * np.tile([1, -1], 640))
    assert low.width < 0 < high.width
    assert hiss.teeth > 0.8 and hiss.open < low.open
    assert tracker.target(np.zeros(1280, np.float32)) == REST
