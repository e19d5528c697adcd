"""Between the end of speech and the end of the turn: the turn model's verdict and a reply generated ahead.

A part of the ``Session`` actor (a base class of it, like ``Hearing``): these
handlers run on the session's one event queue.

End of turn: when the STT closes an utterance, the session sets the "eot"
timer from the transcript alone and, if the Smart Turn model is loaded, runs
it on the user's last seconds of audio in a thread; its probability then moves
the timer (``smart_turn.turn_target_ms``): a clearly complete turn ends at
once, an unlikely one waits longer, up to ``max_endpointing_delay_ms``. With
the model the STT ends utterances after a shorter silence, so a turn is never
ended before the verdict (unless the model is slower than ``VERDICT_GRACE_MS``
beyond the plain wait), and not while the audio after the end of speech
already has voice again (the STT reports it only after its final decode).

Preemptive generation: while that timer runs, the LLM already generates a
reply to what the user said so far, and its voice already speaks the start
of it (the rest waits, as the reply may yet be dropped). The
reply is held: its text and audio wait in the orchestrator, nothing goes to
the client. When the turn ends with the same words, the held reply is
released (its text and audio so far at once, then the rest as it comes);
when the words differ (the user went on, or the final transcript differs from
the text it started on), it is cancelled and its tentative history removed
before the turn's own reply starts. So no audio is ever sent for words the
user did not say.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from voicemesh.errors import VoiceMeshError
from voicemesh.orchestrator.reply import Reply
from voicemesh.speech.turn import Judge, TurnDetector
from voicemesh.speech.turn.text import same_words
from voicemesh.runtime.auth import check_quota
from voicemesh.v1 import llm_pb2

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0


@dataclass
class Preemption:
    """A held reply to ``text``, generated before the turn ended."""

    reply: Reply
    text: str
    message: llm_pb2.ChatMessage  # the tentative user message it added to the history
    task: asyncio.Task


class Anticipation:
    """End-of-turn timing and preemptive generation of a Session."""

    turns: TurnDetector
    preemptive = False
    preemption: Preemption | None = None
    verdict: tuple[float | None, float] | None = None  # last (model probability or None, silence target ms)
    _turn_check = 0

    async def _end_of_speech(self, end_ms: float) -> None:
        """The STT closed an utterance with words at ``end_ms``: end the turn now, or set the timer."""
        self._turn_check += 1
        text = self.user.final_text
        decision = self.turns.end_of_speech(text, self.clock.ms - end_ms, closing=self.closing)
        if decision.judge is not None:
            samples = self.recent.until(self.clock.ms)
            self._spawn(self._judge(self._turn_check, end_ms, samples, decision.judge), "turn-model")
        else:
            self.verdict = (None, self.turns.target_ms(text))
        if decision.wait_ms <= 0 or self.closing:
            await self._commit_user_turn()
            return
        self._timer("eot", decision.wait_ms)
        await self._preempt(text)

    async def _judge(self, check: int, end_ms: float, samples, judge: Judge) -> None:
        probability = await self.turns.verdict(samples, judge)
        self.events.put_nowait(("turn_probability", check, end_ms, probability))

    async def _on_turn_probability(self, check: int, end_ms: float, probability: float | None) -> None:
        if check != self._turn_check or "eot" not in self._timers:
            return  # the user went on, or the turn already ended
        target = self.turns.target_ms(self.user.final_text, probability)
        self.verdict = (probability, target)
        wait = target - (self.clock.ms - end_ms)
        log.debug("turn model: %s for %r: end of turn after %.0f ms of silence", probability,
                  self.user.final_text, target)
        if wait <= 0:
            await self._commit_user_turn()
        else:
            self._timer("eot", wait)

    def _user_goes_on(self) -> None:
        """Speech started again: an older verdict of the turn model is stale."""
        self._turn_check += 1

    # -- preemptive generation ---------------------------------------------------------------

    async def _preempt(self, text: str) -> None:
        """Start a held reply to ``text`` (the user's words so far) unless one to the same words runs."""
        if not self.preemptive or self.closing or not self.turns.may_preempt(text):
            return  # an open last word ("order a"): the user almost surely goes on
        if self.reply is not None or self.suspended is not None:
            return  # the agent has the floor: the turn's end interrupts it first
        current = self.preemption
        if current is not None and same_words(current.text, text) and not current.task.done():
            return
        await self._drop_preemption()
        try:
            await check_quota()
        except VoiceMeshError:
            return  # the turn itself reports the refusal
        message = llm_pb2.ChatMessage(role="user", content=text)
        self.chat.history.append(message)
        reply = Reply(self, self.next_turn, held=True)

        async def run() -> None:
            await reply.run()
            self.events.put_nowait(("reply_done", reply))

        task = self._spawn(run(), f"preempt-{reply.turn_id}")
        self.preemption = Preemption(reply, text.strip(), message, task)
        log.debug("turn %d: generating ahead for %r", reply.turn_id, text)

    async def _drop_preemption(self) -> None:
        """Cancel the held reply and take its tentative user message out of the history."""
        preemption, self.preemption = self.preemption, None
        if preemption is None:
            return
        await preemption.reply.stop()
        done, _ = await asyncio.wait({preemption.task}, timeout=STOP_TIMEOUT_S)
        if not done:
            preemption.task.cancel()
            await asyncio.gather(preemption.task, return_exceptions=True)
        history = self.chat.history
        for i in range(len(history) - 1, -1, -1):
            if history[i] is preemption.message:
                del history[i]
                break
        self.chat.unsync(preemption.reply.lane_target)  # its server copy holds that message (and maybe more)
        log.debug("turn %d: dropped the reply generated ahead for %r", preemption.reply.turn_id, preemption.text)

    async def _take_preemption(self, turn: int, text: str) -> Reply | None:
        """The held reply for the committed turn ``turn`` if it answers exactly ``text``; else drop it."""
        preemption = self.preemption
        if preemption is None:
            return None
        reply = preemption.reply
        if (preemption.task.done() or reply.turn_id != turn or reply.error is not None
                or not same_words(preemption.text, text)):
            await self._drop_preemption()
            return None
        self.preemption = None
        return reply

    async def _check_preemption(self) -> None:
        """New words were heard: a held reply to other words is dropped now (frees the CPU early)."""
        if self.preemption is not None and not same_words(self.preemption.text, self.user.text):
            await self._drop_preemption()
