"""Whisper decoding on an encoder window fitted to the clip instead of 30 s.

Whisper's encoder always reads a 30 s window, padding short audio with
silence; for a 2 s utterance that padding is ~90% of the work (258 ms of a
~300 ms tiny.en decode on two cores). CTranslate2 accepts a shorter window,
so the clip is encoded with ``margin_s`` of silence after it (~30 ms).
The decoder was trained on full windows, and on a short one it sometimes
"hears" the utterance again in the silence. Guards keep its output honest:

* it decodes with timestamps, and segments that start in the padding (past the
  audio) are dropped;
* a segment that repeats the one before it, or a text that starts over, ends
  the transcript there;
* a clip that whisper's own no-speech test finds empty (a hum, a noise) gives
  no words, as on the full window;
* a decode cut at the length limit for any other reason is not trusted: the
  caller decodes that clip again on the full window.

On the 34 espeak-ng questions of ``bench/quiz.py`` a 3 s margin gave a lower WER than the full window
(12.7% against 17.2%) in an eighth of the time; on piper speech it was 4.2% against 3.0%
(``bench/whisper_window.py`` compares them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

FRAMES_PER_S = 100  # mel frames per second of 16 kHz audio
FULL_FRAMES = 3000  # whisper's 30 s window
TIME_PER_TOKEN_S = 0.02  # a timestamp token's resolution
TAIL_S = 0.2  # a segment starting this close to the end of the audio (or later) is in the padding
TOKENS_PER_S = 12  # length limit: far more tokens than anyone speaks per second
# As faster-whisper decides on its full window: no speech when the no-speech token is likely and the text unlikely.
NO_SPEECH = 0.6
LOW_LOGPROB = -1.0


@dataclass(frozen=True)
class WindowResult:
    """One fitted-window decode: text, word timings (s from the clip's start) and a confidence."""

    text: str
    words: tuple[tuple[str, float, float, float], ...]  # (word, start s, end s, probability)
    confidence: float


def _normalized(tokens_text: str) -> str:
    return re.sub(r"[^\w']+", " ", tokens_text.lower()).strip()


class FittedWindow:
    """Decodes clips of up to 30 s on a window of the clip's length plus ``margin_s`` (thread-safe)."""

    def __init__(self, whisper: Any, *, language: str, beam_size: int, margin_s: float):
        from faster_whisper.tokenizer import Tokenizer

        self._whisper = whisper
        self._tokenizer = Tokenizer(whisper.hf_tokenizer, whisper.model.is_multilingual, task="transcribe",
                                    language=language)
        self._beam_size = beam_size
        self._margin_frames = int(margin_s * FRAMES_PER_S)

    def decode(self, samples: np.ndarray, *, word_times: bool) -> WindowResult | None:
        """The clip's transcript, or None when the decoder did not finish cleanly (decode it on the full window)."""
        import ctranslate2

        # The margin is real silence run through the feature extractor (as whisper's own padding is): zeros in
        # the normalized log-mel space would be a steady sound, not silence.
        padded = np.concatenate([samples, np.zeros(self._margin_frames * 160, dtype=np.float32)])
        features = self._whisper.feature_extractor(padded)
        content = min(len(samples) // 160, FULL_FRAMES)
        frames = min(FULL_FRAMES, features.shape[-1] // 2 * 2)  # an even count: the encoder halves the frames
        window = np.ascontiguousarray(features[None, :, :frames], dtype=np.float32)
        encoded = self._whisper.model.encode(ctranslate2.StorageView.from_array(window))
        duration = len(samples) / 16000
        result = self._whisper.model.generate(
            encoded, [list(self._tokenizer.sot_sequence)], beam_size=self._beam_size,
            max_length=int(duration * TOKENS_PER_S) + 16, suppress_blank=True, suppress_tokens=[-1],
            return_scores=True, return_no_speech_prob=True,
        )[0]
        produced = len(result.sequences_ids[0])
        if result.no_speech_prob > NO_SPEECH and result.scores[0] * produced / (produced + 1) < LOW_LOGPROB:
            return WindowResult("", (), 0.0)  # whisper's own test for a clip with no speech (a hum, a noise)
        segments = self._segments(result.sequences_ids[0], duration)
        if segments is None:
            return None
        tokens = [token for segment in segments for token in segment]
        text = self._tokenizer.decode(tokens).strip()
        if not word_times or not tokens:
            return WindowResult(text, (), float(np.exp(result.scores[0])) if text else 0.0)
        alignment = self._whisper.find_alignment(self._tokenizer, [tokens], encoded, content)[0]
        words = [(w["word"].strip(), float(w["start"]), float(w["end"]), float(w["probability"]))
                 for w in alignment if w["word"].strip()]
        durations = [end - start for _, start, end, _ in words if end > start]
        if words and durations:
            # The alignment often stretches the first word back over the leading silence: keep it at most twice
            # a typical word (whisper's own word timing does the same).
            longest = 2 * min(0.7, float(np.median(durations)))
            word, start, end, probability = words[0]
            words[0] = (word, max(start, end - longest), end, probability)
        words = tuple(words)
        confidence = float(np.mean([w[3] for w in words])) if words else 0.0
        return WindowResult(text, words, confidence)

    def _segments(self, ids: list[int], duration: float) -> list[list[int]] | None:
        """The text tokens of each segment heard inside the audio, once; None if the decode could not be trusted."""
        begin, end_of_text = self._tokenizer.timestamp_begin, self._tokenizer.eot
        segments: list[tuple[float, list[int], bool]] = []  # (start s, text tokens, closed by a timestamp)
        start: float | None = None
        text: list[int] = []
        for token in ids:
            if token >= begin:
                if start is None:
                    start = (token - begin) * TIME_PER_TOKEN_S
                else:
                    segments.append((start, text, True))
                    start, text = None, []
            elif token < end_of_text:
                text.append(token)
        if text:
            segments.append((start or 0.0, text, False))
        kept: list[list[int]] = []
        previous = ""
        for start, tokens, closed in segments:
            said = _normalized(self._tokenizer.decode(tokens))
            if start >= duration - TAIL_S or not said:
                continue  # in the padding past the audio, or empty
            if previous and (said.startswith(previous) or previous.startswith(said)):
                break  # the decoder heard the previous segment again: nothing after it is real
            if not closed:
                repeat = _repeat_at(tokens)
                if repeat is None:
                    return None  # cut at the length limit without a repeat to explain it
                tokens = tokens[:repeat]
            kept.append(tokens)
            previous = said
        return kept


def _repeat_at(tokens: list[int], run: int = 3) -> int | None:
    """Where the first ``run`` tokens start again (a decoder looping over the utterance), or None."""
    head = tokens[:run]
    for at in range(run, len(tokens) - run + 1):
        if tokens[at:at + run] == head:
            return at
    return None
