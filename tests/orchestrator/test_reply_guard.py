"""The reply-length guard: unit tests of its limits, then spoken replies through a real mesh."""

from __future__ import annotations

import pytest

from tests.orchestrator.client import RATE, AgentClient, session_config
from voicemesh.errors import InvalidInput
from voicemesh.orchestrator.config import reply_limits
from voicemesh.orchestrator.reply_guard import ReplyGuard, ReplyLimits
from voicemesh.v1 import agent_pb2

SPEECH = 0.07  # seconds per character, the reply's speaking-rate guess at speed 1


def _feed(guard: ReplyGuard, pieces: list[str]) -> str:
    return "".join(guard.admit(piece, SPEECH) for piece in pieces)


def _tokens(text: str) -> list[str]:
    """Text as an LLM streams it: a word (with its leading space) at a time."""
    words = text.split(" ")
    return [words[0], *(" " + word for word in words[1:])]


def test_a_repeated_line_stops_at_its_second_occurrence():
    line = "I am here to help you with anything you need."
    guard = ReplyGuard(ReplyLimits())
    said = _feed(guard, _tokens(" ".join([line] * 20)))
    assert guard.cut == "repetition"
    assert said.count("help you") == 2 and guard.tokens < 25


def test_a_loop_without_sentence_ends_is_caught_by_its_repeated_stretch():
    guard = ReplyGuard(ReplyLimits())
    said = _feed(guard, _tokens("and then the dog ran round the yard " * 30))
    assert guard.cut == "repetition" and said.count("yard") <= 3


def test_ordinary_replies_pass_untouched():
    text = ("Paris is the capital of France. It sits on the Seine. No, no. "
            "Its museums, its food and its parks draw many visitors every year.")
    guard = ReplyGuard(ReplyLimits())
    assert _feed(guard, _tokens(text)) == text and guard.cut == "" and guard.report() == ("", len(_tokens(text)))


def test_repetition_is_allowed_when_asked():
    guard = ReplyGuard(ReplyLimits(stop_repetition=False))
    text = "Row, row, row your boat gently down the stream. " * 4
    assert _feed(guard, _tokens(text)) == text and not guard.stopped


def test_the_seconds_cap_ends_at_a_word_inside_the_budget():
    guard = ReplyGuard(ReplyLimits(max_seconds=3.0))
    said = _feed(guard, _tokens("one two three four five six seven eight nine ten eleven twelve thirteen " * 5))
    assert guard.cut == "max_seconds"
    assert len(said) * SPEECH <= 3.0 and len(said) * SPEECH > 2.0
    assert said.split(" ")[-1] in {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                                   "eleven", "twelve", "thirteen", ""}
    assert guard.admit(" more", SPEECH) == ""


def test_the_token_cap_counts_deltas():
    guard = ReplyGuard(ReplyLimits(max_tokens=5, max_seconds=100))
    said = _feed(guard, _tokens("a b c d e f g h i j"))
    assert said == "a b c d e" and guard.report() == ("max_tokens", 5)


def test_session_config_limits_default_and_reject_negatives():
    assert reply_limits(agent_pb2.ReplyLimits()) == ReplyLimits(max_tokens=0, max_seconds=30.0, stop_repetition=True)
    assert reply_limits(agent_pb2.ReplyLimits(max_seconds=5, allow_repetition=True)) == ReplyLimits(
        max_tokens=0, max_seconds=5.0, stop_repetition=False)
    with pytest.raises(InvalidInput, match="must not be negative"):
        reply_limits(agent_pb2.ReplyLimits(max_seconds=-1))


@pytest.mark.slow
async def test_a_spoken_reply_is_cut_at_its_seconds_and_the_metrics_say_so(orchestrator):
    config = session_config(instructions="You are a storyteller. Always answer with a long story.",
                            reply_limits=agent_pb2.ReplyLimits(max_seconds=3.0))
    async with AgentClient(orchestrator.address, config) as s:
        s.send(text="Tell me a long story about a dog and a cat.")
        done = await s.turn_done(1)
        metrics = s.of("metrics", 1)[0]
        audio_s = len(s.agent_audio(1)) / 2 / RATE
        print(f"\nguard: cut {metrics.reply_cut!r} after {metrics.reply_tokens} deltas, {len(done.text)} chars, "
              f"{audio_s:.2f} s of audio")
        assert metrics.reply_cut == "max_seconds"
        assert not done.interrupted and len(done.text) * SPEECH <= 3.0
        assert 0.5 < audio_s < 6.0  # the estimate, not the voice, sets the cut: allow the voice its own pace
