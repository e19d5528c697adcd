"""The TTS stream opened ahead of a reply (``orchestrator/warm.py``): clean after a barge-in, closed at the end."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.orchestrator.client import RATE, AgentClient, session_config
from tests.orchestrator.conftest import transcribe
from tests.speech import speak, word_errors, words
from voicemesh.v1 import agent_pb2

pytestmark = pytest.mark.slow

# Given text whose words an answer to "stop talking" never has: if any of its audio reached the next reply
# (a stream reused without its reset), whisper hears them there.
STORY = ("Oswald the purple giraffe collected seashells on Jupiter. Every Tuesday he polished the seashells "
         "with marmalade. His neighbour Penelope, a walrus, sold umbrellas to passing comets. On Fridays "
         "Oswald played the saxophone for the walrus and the comets danced around Jupiter.")
STORY_WORDS = {"oswald", "giraffe", "seashells", "jupiter", "tuesday", "polished", "marmalade", "penelope",
               "walrus", "umbrellas", "comets", "fridays", "saxophone", "danced"}


def log_size(orchestrator) -> int:
    return len(orchestrator.log_path.read_text())


def spoke_ahead(orchestrator, turn: int, since: int) -> bool:
    """The orchestrator's log (after offset ``since``) says the reply of ``turn`` spoke on a stream opened ahead."""
    return f"turn {turn} speaks on the TTS stream opened" in orchestrator.log_path.read_text()[since:]


@pytest.mark.flaky(reruns=1)  # whisper on a loaded machine, and the barge-in's timing on a shared wall clock
async def test_the_reply_after_a_barge_in_has_no_audio_of_the_interrupted_one(orchestrator):
    config = session_config(interruption=agent_pb2.InterruptionSettings(min_duration_ms=150))
    interruption = speak("Stop, please stop talking now.", RATE)  # before the session (piper blocks this loop)
    since = log_size(orchestrator)
    async with AgentClient(orchestrator.address, config) as s:
        s.start_audio()
        s.send(say=agent_pb2.Say(text=STORY))
        await s.wait_for(lambda e: len(s.agent_audio(1)) >= int(1.5 * RATE) * 2, timeout=90)
        s.say(interruption)
        cut = await s.turn_done(1)
        assert cut.interrupted
        answer = await s.turn_done(2, timeout=120)
        assert not answer.interrupted
        text, audio = s.agent_text(2), s.agent_audio(2)
    assert text.strip() and audio
    # The next reply took the stream opened for it while the user spoke, not the cut reply's.
    assert spoke_ahead(orchestrator, 2, since)
    heard = transcribe(audio)
    stale = STORY_WORDS & set(words(heard)) - set(words(text))
    assert not stale, f"the reply after the barge-in spoke {sorted(stale)} of the interrupted reply: {heard!r}"
    errors, count = word_errors(text, heard)  # and it speaks its own text from its first word
    assert errors <= max(3, 0.3 * count), (text, heard)


async def test_the_stream_opened_while_the_user_speaks_is_closed_when_the_session_ends(orchestrator, mesh):
    async def synthesize_streams(expected: float, timeout_s: float = 15.0) -> float:
        deadline = time.monotonic() + timeout_s
        while (n := mesh.streams_open("tts", "Synthesize")) != expected and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        return n

    question = speak("Can you tell me about the history of the old lighthouse by the harbour?", RATE)
    assert await synthesize_streams(0) == 0  # no session open
    since = log_size(orchestrator)
    async with AgentClient(orchestrator.address, session_config()) as s:
        s.start_audio()
        await s.wait_for(lambda e: e.kind == "started")
        assert await synthesize_streams(0, timeout_s=1.0) == 0  # a session that waits holds no TTS stream
        s.say(question)
        await s.wait_for(lambda e: e.kind == "user_transcript", timeout=60)  # the user is speaking
        assert await synthesize_streams(1) == 1  # the turn's stream, opened before the turn ends
        assert not s.of("turn_done")
    # The client went away mid-utterance: the session ends, and with it the stream no reply took.
    assert await synthesize_streams(0) == 0
    assert not spoke_ahead(orchestrator, 1, since)
