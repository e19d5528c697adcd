"""The agent's side of a pipeline session: the reply that speaks, one a barge-in suspended, one generated ahead.

Barge-in: ``interrupt`` stops the reply at once and keeps it suspended with
the text the user heard; the STT's words confirm the interruption (the reply
is kept as heard), and without words until ``false_interruption_ms`` the
rest of it is spoken after all (``resume``).

Preemptive generation: while the end-of-turn timer runs, the LLM already
generates a reply to what the user said so far, and its voice already speaks
the start of it (the rest waits, as the reply may yet be dropped). The reply
is held: its text and audio wait in the orchestrator, nothing goes to the
client. When the turn ends with the same words, the held reply is released
(its text and audio so far at once, then the rest as it comes); when the
words differ (the user went on, or the final transcript differs from the
text it started on), it is cancelled and its tentative history removed
before the turn's own reply starts. So no audio is ever sent for words the
user did not say.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from voicemesh.errors import VoiceMeshError
from voicemesh.orchestrator.events import TurnTiming
from voicemesh.orchestrator.inbox import ReplyDone
from voicemesh.orchestrator.lanes import TtsLane
from voicemesh.orchestrator.reply import Reply
from voicemesh.orchestrator.warm import WarmVoice
from voicemesh.runtime.auth import check_quota, record_sent
from voicemesh.speech.turn.text import same_words
from voicemesh.v1 import agent_pb2, common_pb2, llm_pb2

if TYPE_CHECKING:
    from voicemesh.orchestrator.pipeline import PipelineMode

log = logging.getLogger(__name__)

A = agent_pb2
STOP_TIMEOUT_S = 5.0


@dataclass
class Preemption:
    """A held reply to ``text``, generated before the turn ended."""

    reply: Reply
    text: str
    message: llm_pb2.ChatMessage  # the tentative user message it added to the history
    task: asyncio.Task


class Replies:
    """The replies of a pipeline session."""

    def __init__(self, pipeline: PipelineMode):
        self.pipeline, self.session = pipeline, pipeline.session
        self.reply: Reply | None = None
        self.suspended: tuple[Reply, int] | None = None  # barged-in reply waiting for words or resume
        self.preemption: Preemption | None = None
        self.resume_due = False  # the false-interruption timeout passed while the user still spoke
        s = self.session
        self.warm = WarmVoice(lambda turn, target: TtsLane.open(s.clients, target, s.turn_metadata(turn),
                                                                rate=s.spec.output_rate),
                              spawn=s.spawn, enabled=s.warm_tts)

    @property
    def speaking(self) -> bool:
        """Whether a reply has the floor (it talks and is not stopped)."""
        return self.reply is not None and not self.reply.stopped

    def start(self, reply: Reply, *, add_to_history: bool = True, prefix: str = "", running: bool = False) -> None:
        s = self.session
        reply.add_to_history, reply.prefix = add_to_history, prefix
        self.reply = reply
        self.pipeline.barge.reset()
        if self.pipeline.detector is not None:
            self.pipeline.detector.reset(s.clock.ms)  # listen for barge-in from here
        s.emit.state(A.AGENT_STATE_THINKING, reply.turn_id)
        if not running:  # a held reply's task already runs
            self._run(reply, f"reply-{reply.turn_id}")

    def _run(self, reply: Reply, name: str) -> asyncio.Task:
        async def run() -> None:
            await reply.run()
            self.session.events.put_nowait(ReplyDone(reply))

        return self.session.spawn(run(), name)

    def warm_up(self) -> None:
        """The user started speaking: open the TTS stream of the turn it may become (``warm.py``)."""
        s = self.session
        if not s.closing and s.mode is self.pipeline and s.tts_targets:
            self.warm.prepare(s.next_turn, s.tts_targets[0])

    def _bill_dead_voice(self, reply: Reply) -> None:
        """The TTS stream died before its Usage: bill the text sent to it and the audio it gave, under that
        stream's own ledger record (replacing what the service wrote of it; see ``auth.record_sent``)."""
        lane = reply.tts
        if lane is None or lane.reported:
            return
        usage = common_pb2.Usage(characters=lane.sent_chars, model=lane.target.descriptor,
                                 audio_seconds_out=reply.playout.received_samples / self.session.spec.output_rate)
        self.session.emit.usage(reply.turn_id, "tts", usage)
        record_sent("tts", usage, lane.stream_id, reply.turn_id)

    async def done(self, reply: Reply) -> None:
        if reply is self.reply and not reply.stopped:
            if reply.error is not None and reply.audio_sent:
                # Its voice died mid-reply: the user hears the audio already sent, and no more of the turn.
                chars = reply.playout.spoken_chars(reply.playout.sent_samples)
                self._bill_dead_voice(reply)
                self._finish(reply, chars, interrupted=True)
            else:
                self._finish(reply, len(reply.text), interrupted=False)

    def audio_started(self, reply: Reply) -> None:
        if reply is self.reply and not reply.stopped:
            self.session.emit.state(A.AGENT_STATE_SPEAKING, reply.turn_id)

    async def settle(self) -> None:
        """Before a new turn: stop the agent if it talks, and close a barged-in reply."""
        if self.speaking:
            await self.interrupt(confirmed=True)
        if self.suspended is not None:
            await self.confirm()

    async def interrupt(self, *, confirmed: bool) -> None:
        s = self.session
        reply = self.reply
        if reply is None or reply.stopped:
            if confirmed and self.suspended is not None:
                await self.confirm()
            return
        chars = reply.playout.spoken_chars(reply.playout.played_samples(time.monotonic()))
        await reply.stop()
        self.suspended = (reply, chars)
        s.emit.state(A.AGENT_STATE_LISTENING, reply.turn_id)
        if confirmed:
            await self.confirm()
        else:
            s.timer("resume", s.spec.false_interruption_ms)

    async def confirm(self) -> None:
        """The interruption was real: the suspended reply ends as heard."""
        reply, chars = self.suspended
        self.suspended, self.resume_due = None, False
        self.session.cancel_timer("resume")
        self._finish(reply, chars, interrupted=True)

    async def resume_timeout(self) -> None:
        """No words came within the false-interruption timeout."""
        if self.pipeline.user.speaking:
            self.resume_due = True  # decide when the STT closes the utterance
        else:
            await self.resume()

    async def resume(self) -> None:
        """The barge-in was noise: speak the rest of the reply."""
        reply, chars = self.suspended
        self.suspended, self.resume_due = None, False
        rest = reply.text[chars:].strip()
        if not rest:
            self._finish(reply, chars, interrupted=False)
            return
        log.info("turn %d: false interruption, resuming", reply.turn_id)
        self.session.chat.unsync(reply.lane_target)
        again = Reply(self.session, reply.turn_id, say=rest)
        again.llm_model, again.fallbacks = reply.llm_model, reply.fallbacks
        self.start(again, add_to_history=reply.add_to_history,
                   prefix=(reply.prefix + " " + reply.text[reply.history_start:chars]).strip())

    def _finish(self, reply: Reply, chars: int, *, interrupted: bool) -> None:
        s = self.session
        if self.reply is reply:
            self.reply = None
        kept = (reply.prefix + " " + reply.text[reply.history_start:chars]).strip()
        complete = reply.generation_done and chars >= len(reply.text) and not reply.prefix
        if reply.add_to_history:
            s.chat.add_reply(kept, target=reply.lane_target, in_sync=complete)
        elif not complete and reply.lane_target is not None:
            s.chat.unsync(reply.lane_target)
        timing = s.timings.pop(reply.turn_id, TurnTiming())
        s.emit.metrics(reply.turn_id, timing, reply.times, models=(reply.llm_model, reply.tts_model),
                       fallbacks=reply.fallbacks.entries, guard=reply.guard.report())
        if reply.error is not None:
            log.warning("turn %d failed: %s", reply.turn_id, reply.error)
            s.emit.error(reply.turn_id, reply.error)
        s.emit.turn_done(reply.turn_id, kept, interrupted=interrupted)
        if self.reply is None:
            s.emit.state(A.AGENT_STATE_LISTENING, reply.turn_id)

    # -- preemptive generation ---------------------------------------------------------------

    async def preempt(self, text: str) -> None:
        """Start a held reply to ``text`` (the user's words so far) unless one to the same words runs."""
        s = self.session
        if not s.preemptive or s.closing or not self.pipeline.turns.may_preempt(text):
            return  # an open last word ("order a"): the user almost surely goes on
        if self.reply is not None or self.suspended is not None:
            return  # the agent has the floor: the turn's end interrupts it first
        current = self.preemption
        if current is not None and same_words(current.text, text) and not current.task.done():
            return
        await self.drop_preemption()
        try:
            await check_quota()
        except VoiceMeshError:
            return  # the turn itself reports the refusal
        message = llm_pb2.ChatMessage(role="user", content=text)
        s.chat.history.append(message)
        reply = Reply(s, s.next_turn, held=True)
        task = self._run(reply, f"preempt-{reply.turn_id}")
        self.preemption = Preemption(reply, text.strip(), message, task)
        log.debug("turn %d: generating ahead for %r", reply.turn_id, text)

    async def drop_preemption(self) -> None:
        """Cancel the held reply and take its tentative user message out of the history."""
        preemption, self.preemption = self.preemption, None
        if preemption is None:
            return
        await preemption.reply.stop()
        done, _ = await asyncio.wait({preemption.task}, timeout=STOP_TIMEOUT_S)
        if not done:
            preemption.task.cancel()
            await asyncio.gather(preemption.task, return_exceptions=True)
        history = self.session.chat.history
        for i in range(len(history) - 1, -1, -1):
            if history[i] is preemption.message:
                del history[i]
                break
        self.session.chat.unsync(preemption.reply.lane_target)  # its server copy holds that message (and maybe more)
        log.debug("turn %d: dropped the reply generated ahead for %r", preemption.reply.turn_id, preemption.text)

    async def take_preemption(self, turn: int, text: str) -> Reply | None:
        """The held reply for the committed turn ``turn`` if it answers exactly ``text``; else drop it."""
        preemption = self.preemption
        if preemption is None:
            return None
        reply = preemption.reply
        if (preemption.task.done() or reply.turn_id != turn or reply.error is not None
                or not same_words(preemption.text, text)):
            await self.drop_preemption()
            return None
        self.preemption = None
        return reply

    async def check_preemption(self, heard: str) -> None:
        """New words were heard: a held reply to other words is dropped now (frees the CPU early)."""
        if self.preemption is not None and not same_words(self.preemption.text, heard):
            await self.drop_preemption()
