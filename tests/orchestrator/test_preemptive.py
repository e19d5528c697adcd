"""Preemptive generation: a reply generated before the turn ends is spoken only for the words the user said.

A Session runs in this process over the real LLM and TTS services of the
module's mesh; its STT events are scripted (posted to the session's queue as
its STT stream would), so the transcripts can differ on purpose.
"""

from __future__ import annotations

import asyncio
import time
from typing import Self

from tests.orchestrator.client import session_config
from voicemesh.orchestrator.clients import MeshClients
from voicemesh.orchestrator.config import validate
from voicemesh.orchestrator.inbox import SttEvent, TimerFired
from voicemesh.orchestrator.session import Session
from voicemesh.speech.turn.text import same_words
from voicemesh.v1 import agent_pb2, stt_pb2

FIRST = "What is the capital of France?"
GOES_ON = "And what about Spain?"


def test_same_words_ignores_case_and_punctuation_only():
    assert same_words("What is the capital of France?", "what is the capital of France")
    assert not same_words("What is the capital of France?", "What is the capital of France? And Spain?")
    assert not same_words("", "")
    assert not same_words("Book a table for two.", "Book a table for three.")


class Scripted:
    """A Session fed with scripted STT events; records what it sends to the client."""

    def __init__(self, mesh, *, preemptive: bool = True, turn_model=None, min_delay_ms: int = 800,
                 max_delay_ms: int = 0, turn_policy: str | None = None, speculative: bool = False):
        config = session_config(turn_detection=agent_pb2.TurnDetection(
            min_endpointing_delay_ms=min_delay_ms, max_endpointing_delay_ms=max_delay_ms))  # 0: the default
        self.clients = MeshClients(mesh.config())
        self.session = Session(validate(config, self.clients.mesh), self.clients, session_id="scripted",
                               max_tokens=40, preemptive=preemptive, turn_model=turn_model,
                               turn_policy=turn_policy, speculative=speculative)
        self.sent: list[agent_pb2.SessionResponse] = []
        self._requests: asyncio.Queue = asyncio.Queue()

    async def __aenter__(self) -> Self:
        async def requests():
            while (item := await self._requests.get()) is not None:
                yield item

        async def consume():
            async for message in self.session.run(requests()):
                self.sent.append(message)

        self._task = asyncio.create_task(consume())
        await self.until(lambda: self.session.listener.lane is not None and self.sent)
        return self

    async def __aexit__(self, *exc) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self.clients.close()

    async def until(self, check, timeout_s: float = 60.0):
        deadline = time.monotonic() + timeout_s
        while not check():
            assert not self._task.done(), self._task.exception() if not self._task.cancelled() else "cancelled"
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.01)
        return check()

    def stt(self, **event) -> None:
        self.session.events.put_nowait(SttEvent(self.session.listener.lane, stt_pb2.RecognizeResponse(**event)))

    def utterance(self, interim: str, final: str, at_ms: int) -> None:
        """An utterance as the STT reports it: start, an interim, the final, the end."""
        self.stt(speech_started=stt_pb2.SpeechStarted(time_ms=at_ms))
        self.stt(interim=stt_pb2.Transcript(text=interim, stable_text=interim))
        self.stt(final=stt_pb2.Transcript(text=final, end_ms=at_ms + 1000))
        self.stt(speech_ended=stt_pb2.SpeechEnded(time_ms=at_ms + 1000))

    def of(self, kind: str) -> list:
        return [getattr(m, kind) for m in self.sent if m.WhichOneof("event") == kind]

    def user_messages(self) -> list[str]:
        return [m.content for m in self.session.chat.history if m.role == "user"]


async def held_text(scripted: Scripted) -> str:
    """Wait until the reply generated ahead has text, and return it (the turn has not ended yet)."""
    session = scripted.session
    await scripted.until(lambda: session.preemption is not None and session.preemption.reply.held_text)
    return session.preemption.reply.held_text


async def held_audio(scripted: Scripted) -> str:
    """Wait until the voice has spoken the start of the reply generated ahead; returns its text so far."""
    session = scripted.session
    await scripted.until(lambda: session.preemption is not None
                         and session.preemption.reply.times.first_synthesized is not None)
    return session.preemption.reply.held_text


def fire_now(scripted: Scripted, timer: str) -> None:
    """Make a running timer of the session fire now (posted as its own call_later would)."""
    _handle, token = scripted.session._timers[timer]
    scripted.session.events.put_nowait(TimerFired(timer, token))


# A turn end far enough away (the final is scripted at 1 s of audio the session never got: +1 s more)
# that the reply generated ahead is synthesized before it, even on a busy machine.
LONG_WAIT_MS = 8000


async def test_a_reply_generated_ahead_is_spoken_when_the_turn_ends_with_the_same_words(mesh):
    async with Scripted(mesh, min_delay_ms=LONG_WAIT_MS, max_delay_ms=LONG_WAIT_MS) as s:
        s.utterance("What is the capital", FIRST, at_ms=0)
        ahead = await held_audio(s)  # generated and already synthesized
        await asyncio.sleep(0.3)  # time for anything it would send to reach the client
        assert ahead and not s.of("agent_text") and not s.of("agent_audio")  # held: nothing went out
        reply = s.session.preemption.reply
        voiced = reply.text
        await asyncio.sleep(0.3)
        assert reply.text == voiced  # with its first audio ready, the rest waits for the turn's end
        fire_now(s, "eot")  # the turn ends now rather than after the long wait
        done = await s.until(lambda: s.of("turn_done"))
        assert done[0].turn_id == 1 and not done[0].interrupted
        assert reply.text.startswith(ahead)  # the reply generated ahead is the one spoken
        assert "".join(t.delta for t in s.of("agent_text")) == reply.text
        assert s.of("agent_audio")
        # Its first audio counts from when it went to the client, not from when the voice made it.
        assert reply.times.first_audio > reply.times.first_synthesized
        assert s.user_messages() == [FIRST]


async def test_no_audio_for_words_the_user_did_not_say_when_the_final_transcript_differs(mesh):
    async with Scripted(mesh, min_delay_ms=LONG_WAIT_MS, max_delay_ms=LONG_WAIT_MS) as s:
        s.utterance("What is the capital", FIRST, at_ms=0)
        ahead = await held_audio(s)  # generated and already synthesized
        dropped = s.session.preemption.reply
        # The user goes on before the turn ends: the interim already differs from the text generated for.
        s.utterance("And what about", GOES_ON, at_ms=1500)
        await s.until(lambda: "eot" in s.session._timers and GOES_ON in s.session.user.final_text)
        fire_now(s, "eot")
        done = await s.until(lambda: s.of("turn_done"))
        assert dropped.stopped and dropped.text.startswith(ahead)  # it went to its voice, never to the client
        assert done[0].turn_id == 1 and not done[0].interrupted
        texts = s.of("agent_text")
        assert texts and all(t.turn_id == 1 for t in texts)
        assert "".join(t.delta for t in texts).strip() == done[0].text  # only the turn's own reply
        said = [m for m in s.sent if m.WhichOneof("event") in ("agent_text", "agent_audio", "user_transcript")]
        first_agent = next(i for i, m in enumerate(said) if m.WhichOneof("event") != "user_transcript")
        finals = [i for i, m in enumerate(said) if m.WhichOneof("event") == "user_transcript" and m.user_transcript.final]
        assert len(finals) == 2 and finals[-1] < first_agent  # nothing spoken before the words that ended the turn
        assert s.user_messages() == [f"{FIRST} {GOES_ON}"]  # the tentative message is gone
        assert ahead  # it had generated before being dropped


async def test_a_burst_without_words_keeps_the_reply_generated_ahead(mesh):
    async with Scripted(mesh) as s:
        s.utterance("What is the capital", FIRST, at_ms=0)
        await held_text(s)
        kept = s.session.preemption.reply
        s.stt(speech_started=stt_pb2.SpeechStarted(time_ms=1500))  # a cough: the STT hears no words
        s.stt(final=stt_pb2.Transcript(text="", end_ms=1700))
        s.stt(speech_ended=stt_pb2.SpeechEnded(time_ms=1700))
        await s.until(lambda: s.of("turn_done"))
        assert not kept.stopped and kept.text and kept.text == s.of("turn_done")[0].text
        assert s.user_messages() == [FIRST]


async def test_without_preemptive_generation_nothing_is_generated_before_the_turn_ends(mesh):
    async with Scripted(mesh, preemptive=False) as s:
        s.utterance("What is the capital", FIRST, at_ms=0)
        await asyncio.sleep(0.3)
        assert s.session.preemption is None
        await s.until(lambda: s.of("turn_done"))
        assert s.user_messages() == [FIRST]


# -- speculation: a reply held from an interim, before the STT's final decode ----------------------

SPAIN = "What is the capital of Spain?"


def interim(scripted: Scripted, text: str, at_ms: int = 0, end_candidate: bool = True) -> None:
    """An interim of ``text``; an end candidate is the STT's final decode at a pause (``end_candidate``)."""
    scripted.stt(speech_started=stt_pb2.SpeechStarted(time_ms=at_ms))
    scripted.stt(interim=stt_pb2.Transcript(text=text, stable_text="", end_candidate=end_candidate))


def end(scripted: Scripted, final: str, at_ms: int = 1000) -> None:
    scripted.stt(final=stt_pb2.Transcript(text=final, end_ms=at_ms))
    scripted.stt(speech_ended=stt_pb2.SpeechEnded(time_ms=at_ms))


async def test_a_reply_held_from_an_interim_is_spoken_when_the_final_has_the_same_words(mesh):
    async with Scripted(mesh, min_delay_ms=LONG_WAIT_MS, max_delay_ms=LONG_WAIT_MS, speculative=True) as s:
        interim(s, FIRST)
        ahead = await held_audio(s)  # made before any final transcript came
        held = s.session.preemption.reply
        assert ahead and not s.of("agent_text") and not s.of("agent_audio")
        end(s, FIRST.lower().rstrip("?"))  # the same words (case and punctuation aside)
        await s.until(lambda: "eot" in s.session._timers)
        fire_now(s, "eot")
        done = await s.until(lambda: s.of("turn_done"))
        assert not done[0].interrupted and done[0].text == held.text  # the held reply is the one spoken
        assert s.of("agent_audio") and held.playout.sent_samples > 0


async def test_a_reply_held_from_an_interim_sends_no_audio_when_the_final_says_other_words(mesh):
    async with Scripted(mesh, min_delay_ms=LONG_WAIT_MS, max_delay_ms=LONG_WAIT_MS, speculative=True) as s:
        interim(s, FIRST)
        ahead = await held_audio(s)  # synthesized: its audio is ready in the orchestrator
        dropped = s.session.preemption.reply
        end(s, SPAIN)  # the final decode heard other words than the interim
        await s.until(lambda: "eot" in s.session._timers)
        fire_now(s, "eot")
        done = await s.until(lambda: s.of("turn_done"))
        assert ahead and dropped.stopped and dropped.playout.sent_samples == 0
        said = [m.WhichOneof("event") for m in s.sent]
        final_at = max(i for i, m in enumerate(s.sent) if m.WhichOneof("event") == "user_transcript"
                       and m.user_transcript.final)
        assert "agent_audio" in said and "agent_audio" not in said[:final_at]  # no audio before the words said
        assert "".join(t.delta for t in s.of("agent_text")).strip() == done[0].text
        assert s.user_messages() == [SPAIN]  # the tentative message of the interim is gone


async def test_only_an_end_candidate_interim_starts_a_held_reply(mesh):
    """An interim of speech still going on starts nothing, even when it looks complete: most such replies would
    be dropped with their LLM and TTS work. The STT's end candidate (its final decode at a pause) starts one."""
    async with Scripted(mesh, min_delay_ms=LONG_WAIT_MS, max_delay_ms=LONG_WAIT_MS, speculative=True) as s:
        interim(s, FIRST, end_candidate=False)
        await s.until(lambda: s.of("user_transcript"))
        await asyncio.sleep(0.3)
        assert s.session.preemption is None
        s.stt(interim=stt_pb2.Transcript(text=FIRST, stable_text=FIRST, end_candidate=True))
        assert await held_text(s)
