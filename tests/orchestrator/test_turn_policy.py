"""The end-of-turn policy is chosen by the orchestrator's settings and changes when a turn ends.

The same scripted utterance, an order broken off after "a", goes to sessions
whose policy comes from ``VOICEMESH_TURN_POLICY``: the silence policy ends
the turn after the plain silence wait, the transcript policy waits the long
wait for the user to go on.
"""

from __future__ import annotations

import time

import pytest

from tests.orchestrator.test_preemptive import Scripted
from voicemesh.errors import InvalidInput
from voicemesh.orchestrator.server import Settings, turn_policy
from voicemesh.settings import from_env
from voicemesh.v1 import stt_pb2

MIN_MS, MAX_MS = 500, 3000
OPEN = "I would like to order a"  # an open last word: unfinished by the transcript's look


async def _turn_end_s(mesh, policy: str) -> tuple[float | None, Scripted]:
    """Seconds from the end of speech to the end of the turn (None: not within 2 s)."""
    name, model = turn_policy(from_env(Settings))
    assert name == policy
    async with Scripted(mesh, preemptive=False, turn_policy=name, turn_model=model, min_delay_ms=MIN_MS,
                        max_delay_ms=MAX_MS) as s:
        s.session.clock.received(s.session.spec.input_rate)  # 1 s of audio came in: the speech ends now
        s.stt(speech_started=stt_pb2.SpeechStarted(time_ms=0))
        s.stt(final=stt_pb2.Transcript(text=OPEN, end_ms=1000))
        s.stt(speech_ended=stt_pb2.SpeechEnded(time_ms=1000))
        start = time.monotonic()
        try:
            await s.until(lambda: s.user_messages(), timeout_s=2.0)
        except AssertionError:
            assert "eot" in s.session._timers and s.session.verdict == (None, MAX_MS)  # still waiting, by design
            return None, s
        return time.monotonic() - start, s


async def test_the_silence_policy_from_the_settings_ends_an_open_turn_after_the_plain_wait(mesh, monkeypatch):
    monkeypatch.setenv("VOICEMESH_TURN_POLICY", "silence")
    waited, s = await _turn_end_s(mesh, "silence")
    assert waited is not None and MIN_MS / 1000 - 0.05 <= waited < MAX_MS / 1000
    assert s.user_messages() == [OPEN]


async def test_the_transcript_policy_from_the_settings_waits_longer_on_the_same_open_turn(mesh, monkeypatch):
    monkeypatch.setenv("VOICEMESH_TURN_POLICY", "transcript")
    waited, s = await _turn_end_s(mesh, "transcript")
    assert waited is None and not s.user_messages()


def test_an_unknown_turn_policy_is_refused_with_the_known_ones():
    with pytest.raises(InvalidInput, match="silence, transcript, smart-turn"):
        turn_policy(Settings(turn_policy="coin-flip"))
