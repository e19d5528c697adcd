"""The Smart Turn policy: the model's verdict on the user's audio and the transcript set the wait.

When the VAD closes an utterance, the wait is first set from the transcript
alone and the model (``model.SmartTurn``) runs on the user's turn (its audio
from 500 ms before the turn's first speech start, at most 8 s); its
probability then moves the wait (``turn_target_ms``): a clearly complete
turn ends at once, an unlikely one waits longer, up to ``max_delay_ms`` (a
transcribed question no longer than the plain wait). With the model the VAD
closes utterances after a shorter silence (``QUICK_MS``), so a turn is never
ended before the verdict (unless the model is slower than
``VERDICT_GRACE_MS`` beyond the plain wait), and not while the audio after
the end of speech already has voice again (the STT reports it only after its
final decode).
"""

from __future__ import annotations

import asyncio

import numpy as np

from voicemesh.speech.turn.base import EndOfSpeech, Judge, TurnDetector
from voicemesh.speech.turn.model import RATE, SmartTurn
from voicemesh.speech.turn.text import asks, completeness

CONFIDENT = 0.85  # at or above: the turn is clearly complete
UNLIKELY = 0.5  # below: the user is probably going on
QUICK_MS = 300  # silence after which a turn the model is sure of ends (the VAD's endpointing then)
WINDOW_SILENCE_MS = 200  # the silence after the end of speech in the model's window (as its VAD stop is set)
VERDICT_GRACE_MS = 400  # how long past the plain wait the turn waits for the model's verdict
SPEAKING_AGAIN = -1.0  # the verdict when the audio after the end of speech has voice (not a probability)


def voice_in(samples) -> bool:
    """Whether 16 kHz audio holds voice (the Silero VAD of the stt extra; blocking)."""
    from voicemesh.speech.vad import shared_vad

    probs = shared_vad().stream().process(samples)
    return bool(len(probs)) and float(probs.max()) >= 0.5


def turn_target_ms(probability: float | None, text: str, *, min_delay_ms: float, max_delay_ms: float,
                   quick_ms: float) -> float:
    """Silence (ms after the end of speech) to wait before ending the turn.

    ``probability`` is the model's (None: no model; ``SPEAKING_AGAIN``: the
    user already speaks again, which waits the longest). A transcript whose last
    word opens a clause waits the longest, whatever the audio sounds like.
    A clearly complete turn (the model confident and the transcript
    finished-looking) ends after ``quick_ms``; an unlikely one waits longer
    the less likely it is, up to ``max_delay_ms``; the rest waits
    ``min_delay_ms``. A question the model doubts waits ``min_delay_ms``
    too: the model misjudges some finished questions (espeak-ng's "What is
    two plus two?" at 0.01), and a user who goes on after one barges in.
    A transcript in doubt (no closing mark, or a trailing comma) waits from
    the longest down to ``min_delay_ms`` as the model grows sure of the end:
    the STT writes a comma where a finished question was cut by a pause
    (espeak-ng's "... arrive in Lyon?" heard as "... in Lyon," at 0.52, a
    comma pause at 0.12-0.17), and such a turn waited the full 3 s.
    The wait never grows with the probability.
    """
    longest = max(max_delay_ms, min_delay_ms)
    look = completeness(text)
    if look == 0.0 or (probability is not None and probability <= SPEAKING_AGAIN):
        return longest
    if probability is None:
        return min_delay_ms if look >= 0.5 else longest
    if look < 0.5:
        return min_delay_ms + (longest - min_delay_ms) * max(0.0, 1.0 - probability / CONFIDENT)
    if probability >= CONFIDENT:
        return min(quick_ms, min_delay_ms)
    if probability < UNLIKELY and not asks(text):
        return min_delay_ms + (longest - min_delay_ms) * (1.0 - probability / UNLIKELY)
    return min_delay_ms


class SmartTurnDetector(TurnDetector):
    """End the turn by the Smart Turn model's verdict and the transcript."""

    name = "smart-turn"
    needs_audio = True

    def __init__(self, model: SmartTurn, **delays: float):
        super().__init__(**delays)
        self.model = model

    @property
    def stt_silence_ms(self) -> int:
        return int(min(self.min_delay_ms, QUICK_MS))  # the model can judge the turn sooner than the plain wait

    def target_ms(self, text: str, probability: float | None = None) -> float:
        return turn_target_ms(probability, text, min_delay_ms=self.min_delay_ms, max_delay_ms=self.max_delay_ms,
                              quick_ms=self.stt_silence_ms)

    def end_of_speech(self, text: str, silence_ms: float, *, closing: bool = False) -> EndOfSpeech:
        wait = self.target_ms(text) - silence_ms
        if closing or completeness(text) == 0.0:
            return EndOfSpeech(wait)  # nothing more comes, or an open last word: the model is not asked
        # The window ends a little after the end of speech, as the model is run; the rest is checked for voice.
        return EndOfSpeech(max(wait, VERDICT_GRACE_MS),
                           Judge(use_model=wait > 0, voice_after_ms=max(0.0, silence_ms - WINDOW_SILENCE_MS)))

    def early_window_ms(self, text: str) -> float | None:
        """The model's window may end this long after a pause's start, before the STT closes the utterance."""
        return WINDOW_SILENCE_MS if completeness(text) > 0.0 else None

    async def verdict(self, samples: np.ndarray, judge: Judge) -> float | None:
        after = int(judge.voice_after_ms * RATE / 1000)
        head = samples[:len(samples) - after] if after else samples
        probability = await self.model.predict(head) if judge.use_model else judge.probability
        if after and await asyncio.to_thread(voice_in, samples[len(samples) - after:]):
            probability = SPEAKING_AGAIN  # the user already speaks again: the STT will say so after its decode
        return probability
