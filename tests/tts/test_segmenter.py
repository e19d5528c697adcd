"""Unit tests of the sentence splitter (pure logic, no model)."""

from __future__ import annotations

import random

import pytest

from voicemesh.speech.segmenter import Segmenter
from tests.speech import SENTENCES


def feed(segmenter: Segmenter, text: str, sizes=(3, 8), seed: int = 0):
    rng = random.Random(seed)
    segments, i = [], 0
    while i < len(text):
        n = rng.randint(*sizes)
        segments += segmenter.push(text[i : i + n])
        i += n
    return segments


def check_spans(text: str, segments) -> None:
    last_end = 0
    for expected_index, segment in enumerate(segments):
        assert segment.index == expected_index
        assert segment.char_start >= last_end
        assert text[segment.char_start : segment.char_end] == segment.text
        last_end = segment.char_end
    covered = " ".join(s.text for s in segments)
    assert covered.split() == text.split()


def test_sentences_streamed_in_small_pieces_come_out_one_per_segment():
    text = " ".join(SENTENCES)
    segmenter = Segmenter(first_clause_min_chars=1000, first_words=1000)
    segments = feed(segmenter, text)
    # The last sentence has no following space yet: only a flush completes it.
    assert [s.text for s in segments] == SENTENCES[:-1]
    segments += segmenter.flush()
    assert [s.text for s in segments] == SENTENCES
    check_spans(text, segments)


@pytest.mark.parametrize("seed", range(5))
def test_spans_are_exact_whatever_the_piece_sizes(seed):
    text = "  Hello there, my friend!  Dr. Smith paid $3.50 for it… Really?\nYes.\n\n(Quoted.) End"
    segmenter = Segmenter()
    segments = feed(segmenter, text, sizes=(1, 6), seed=seed) + segmenter.flush()
    check_spans(text, segments)


def test_decimals_and_abbreviations_do_not_cut():
    segmenter = Segmenter(first_clause_min_chars=1000, first_words=1000)
    text = "It costs 3.5 dollars, e.g. at Mr. Brown's shop."
    segments = segmenter.push(text + " And")
    assert [(s.text, s.char_start, s.char_end) for s in segments] == [(text, 0, len(text))]


def test_period_at_end_of_piece_waits_for_the_next_piece():
    segmenter = Segmenter()
    assert segmenter.push("It is 3.") == []
    assert segmenter.push("5 now") == []
    assert [s.text for s in segmenter.push(". Next")] == ["It is 3.5 now."]


def test_first_clause_goes_early_only_at_the_start_of_a_reply():
    segmenter = Segmenter(first_clause_min_chars=16)
    segments = segmenter.push("Well, sure. Thinking about it carefully, I agree, and more. ")
    assert [s.text for s in segments] == ["Well, sure.", "Thinking about it carefully, I agree, and more."]
    segmenter = Segmenter(first_clause_min_chars=16)
    segments = segmenter.push("Thinking about it carefully, I agree. Then, later, yes. ")
    assert [s.text for s in segments] == ["Thinking about it carefully,", "I agree.", "Then, later, yes."]
    # After a flush the next reply may start early again.
    segments = segmenter.flush() + segmenter.push("Once more from the top, and again. ")
    assert [s.text for s in segments] == ["Once more from the top,", "and again."]


def test_long_run_on_text_is_capped_at_a_space():
    words = " ".join(f"word{i}" for i in range(100))
    segmenter = Segmenter(max_chars=60)
    segments = segmenter.push(words) + segmenter.flush()
    assert all(len(s.text) <= 60 for s in segments)
    assert len(segments) > 5
    check_spans(words, segments)
    assert [s.index for s in segments] == list(range(len(segments)))


def test_text_without_spaces_is_cut_hard():
    segmenter = Segmenter(max_chars=20)
    segments = segmenter.push("x" * 50) + segmenter.flush()
    assert [len(s.text) for s in segments] == [20, 20, 10]
    assert [s.char_start for s in segments] == [0, 20, 40]


def test_punctuation_only_is_no_segment_and_clear_reports_dropped_text():
    segmenter = Segmenter()
    assert segmenter.push(" ... ") == []
    assert segmenter.flush() == []
    segmenter.push("Half a sent")
    assert segmenter.clear() == len("Half a sent")
    assert segmenter.buffered == 0
    segments = segmenter.push("New one. ")
    # Offsets keep counting all text received, dropped text included.
    assert segments[0].char_start == len(" ... ") + len("Half a sent")
    assert segments[0].index == 0


# -- the first piece of a reply, below sentence level ------------------------------------------------

LONG_FIRST = "The capital of France is Paris. It has been the capital for more than a thousand years."


def test_a_long_first_sentence_is_spoken_in_two_pieces_the_rest_by_sentence():
    segmenter = Segmenter()
    segments = segmenter.push(LONG_FIRST) + segmenter.flush()
    assert [s.text for s in segments] == ["The capital of France", "is Paris.",
                                          "It has been the capital for more than a thousand years."]
    check_spans(LONG_FIRST, segments)


@pytest.mark.parametrize("seed", range(8))
def test_streamed_text_is_cut_where_whole_text_is(seed):
    whole = Segmenter()
    expected = [s.text for s in whole.push(LONG_FIRST) + whole.flush()]
    streamed = Segmenter()
    segments = feed(streamed, LONG_FIRST, sizes=(1, 5), seed=seed) + streamed.flush()
    assert [s.text for s in segments] == expected
    check_spans(LONG_FIRST, segments)


def test_the_first_piece_waits_until_two_words_follow_it():
    segmenter = Segmenter()
    assert segmenter.push("The capital of France is") == []  # "is" alone could be all that follows
    assert [s.text for s in segmenter.push(" P")] == ["The capital of France"]  # "is P…": two words follow


@pytest.mark.parametrize("text", [
    "Yes, I can.",  # short: one piece
    "Tell me about it now.",  # a cut after four words would leave one word
    "Thinking about it carefully, yes.",  # the clause would leave one word
    "Sure. Then the capital of France is Paris.",  # the first sentence is already short
])
def test_no_piece_is_a_lone_word_cut_from_its_sentence(text):
    segmenter = Segmenter()
    segments = segmenter.push(text + " ") + segmenter.flush()
    sentences = [s for s in text.replace(". ", ".\n").splitlines()]
    assert [s.text for s in segments] == sentences


def test_the_first_piece_does_not_end_on_a_word_that_leans_on_the_next():
    segmenter = Segmenter()
    segments = segmenter.push("I went to the store with my friend today. ") + segmenter.flush()
    assert [s.text for s in segments] == ["I went to the store", "with my friend today."]


def test_a_clause_ends_the_first_piece_before_the_word_count():
    segmenter = Segmenter(first_words=6)
    segments = segmenter.push("Well now, my friend, the answer is four. ")
    assert [s.text for s in segments] == ["Well now, my friend,", "the answer is four."]


def test_only_the_first_piece_of_each_reply_is_cut_below_a_sentence():
    segmenter = Segmenter()
    first = segmenter.push(LONG_FIRST + " ")
    assert [s.text for s in first][:2] == ["The capital of France", "is Paris."]
    assert len(first) == 3  # the second long sentence is whole
    again = segmenter.flush() + segmenter.push("Berlin is the capital of Germany today. ")
    assert [s.text for s in again] == ["Berlin is the capital", "of Germany today."]


@pytest.mark.parametrize("seed", range(20))
def test_pieces_keep_all_text_in_order_and_never_hold_one_word_cut_from_a_sentence(seed):
    rng = random.Random(seed)
    text = " ".join(rng.sample(SENTENCES, 3)).replace(" the ", ", the ", rng.randint(0, 1))
    segmenter = Segmenter(first_words=rng.randint(2, 6), first_clause_min_chars=rng.randint(4, 20))
    segments = feed(segmenter, text, sizes=(1, 9), seed=seed) + segmenter.flush()
    check_spans(text, segments)
    first, second = segments[0], segments[1]
    if not first.text.endswith(tuple(".?!")):  # cut inside the first sentence: both parts hold two words at least
        assert len(first.text.split()) >= 2 and len(second.text.split()) >= 2, (first.text, second.text)
    assert all(s.text.endswith(tuple(".?!")) for s in segments[1:])  # the rest goes by sentence


def test_a_sentence_cut_in_pieces_bills_what_it_would_bill_whole():
    segmenter = Segmenter()
    segments = segmenter.push(LONG_FIRST) + segmenter.flush()
    first_sentence = "The capital of France is Paris."
    assert [s.lead for s in segments] == [0, 1, 0]  # the space between the pieces goes with the second
    assert segments[0].billed + segments[1].billed == len(first_sentence)
    assert segments[2].billed == len(segments[2].text)
    segmenter.push("Half a sent")
    segmenter.clear()  # dropped text in between: the next segment continues nothing
    assert [s.lead for s in segmenter.push(" New one. ")] == [0]
