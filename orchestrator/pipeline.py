"""The pipeline mode of a session: the user's audio to an STT stream, turns ended by the TurnDetector, replies
from the LLM through a voice (``replies.py``).

What it hears: STT events (speech started, interim and final transcripts,
speech ended) collect the user's turn; the local VAD (``voice.py``) and the
STT's speech start make barge-in. When the STT closes an utterance with
words, the session's ``TurnDetector`` (``voicemesh.speech.turn``) says how
long to wait before the turn ends (the "eot" timer) and may ask for a
verdict on the user's last audio, which moves that wait; meanwhile a reply
may be generated ahead (``Replies.preempt``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import TYPE_CHECKING

import grpc

from voicemesh.errors import DeadlineExceeded, InvalidInput
from voicemesh.orchestrator.events import TurnTiming
from voicemesh.orchestrator.inbox import TurnVerdict
from voicemesh.orchestrator.lanes import SttLane
from voicemesh.orchestrator.listener import Listener
from voicemesh.orchestrator.replies import Replies
from voicemesh.orchestrator.reply import Reply
from voicemesh.orchestrator.turns import BargeIn, UserTurn
from voicemesh.orchestrator.voice import SpeechDetector
from voicemesh.speech.turn import Judge, TurnDetector
from voicemesh.speech.turn.model import RecentAudio
from voicemesh.speech.turn.text import has_words
from voicemesh.runtime.auth import record_sent
from voicemesh.v1 import common_pb2, llm_pb2

if TYPE_CHECKING:
    from voicemesh.orchestrator.session import Session

log = logging.getLogger(__name__)

PRE_SPEECH_MS = 500  # audio before the turn's first speech start that the turn model sees


class PipelineMode:
    """The session on STT, LLM and TTS services (a ``Mode``)."""

    def __init__(self, session: Session, turns: TurnDetector, *, local_vad: bool):
        s = self.session = session
        self.turns = turns
        self.recent = RecentAudio(s.spec.input_rate) if turns.needs_audio else None  # for the detector's verdict
        self.detector = (SpeechDetector(s.spec.input_rate, s.spec.min_interruption_ms, post=s.events.put_nowait,
                                        spawn=s.spawn) if local_vad else None)
        self.listener = Listener(s.clients, s.metadata, rate=s.spec.input_rate, min_silence_ms=turns.stt_silence_ms,
                                 post=s.events.put_nowait, spawn=s.spawn, now=lambda: s.clock.ms)
        self.listener.on_lost = self._bill_lost
        self.user = UserTurn()
        self.barge = BargeIn(s.spec.min_interruption_ms)
        self.replies = Replies(self)
        self.verdict: tuple[float | None, float] | None = None  # last (model probability or None, silence target)
        self._turn_check = 0  # which end of speech a verdict is for
        self._early: tuple[float, asyncio.Task] | None = None  # (end of speech, its verdict made at the pause)

    # -- the Mode interface ----------------------------------------------------------------

    async def enter(self) -> None:
        """Listen: open an STT stream (at the start, and back from a realtime model)."""
        await self.listener.open(self.session.stt_targets, now_ms=self.session.clock.ms)

    async def audio(self, pcm: bytes) -> None:
        self.listener.audio(pcm)
        if self.recent is not None:
            self.recent.feed(pcm)
        if self.detector is not None:
            # The local VAD serves barge-in while a reply is on and, with more than one STT target, the check
            # that the STT hears what it hears (``on_voice``); otherwise its verdict changes nothing, so it does
            # not run: no model call per chunk of a session that only listens.
            if self.replies.reply is not None or len(self.session.stt_targets) > 1:
                self.detector.feed(pcm)
            else:
                self.detector.skip(self.session.clock.ms)
        if self.barge.due(self.session.clock.ms) and self.replies.speaking:
            log.info("barge-in at %.0f ms of user audio (speech from %d ms)", self.session.clock.ms,
                     self.barge.started_ms)
            await self.replies.interrupt(confirmed=self.barge.heard_words)

    async def text(self, text: str) -> None:
        now = time.monotonic()
        self.session.timing = TurnTiming(end_of_speech=now, final=now, decided=now)
        self.user = UserTurn(parts=[text])
        await self.commit_turn()

    async def say(self, text: str, add_to_history: bool) -> None:
        s = self.session
        if not text.strip():
            raise InvalidInput("Say.text is empty")
        await self.replies.drop_preemption()
        await self.replies.settle()
        turn = s.next_turn
        s.next_turn += 1
        if not await s.admitted(turn):
            return
        s.timings[turn] = TurnTiming(decided=time.monotonic())
        self.replies.start(Reply(s, turn, say=text), add_to_history=add_to_history)

    async def interrupt(self) -> None:
        await self.replies.interrupt(confirmed=True)

    async def instructions(self, instructions: str) -> None:
        """The LLM streams get the new instructions with the history on their next turn."""

    def end_input(self) -> None:
        self.listener.end()

    def busy(self) -> bool:
        r = self.replies
        return (not self.listener.ended or r.reply is not None or r.suspended is not None
                or bool(self.user.final_text) or self.session.has_timer("eot"))

    async def leave(self) -> None:
        """Stop listening and talking (the session goes on a realtime model); words not yet answered are dropped."""
        await self.replies.drop_preemption()
        await self.replies.settle()
        self.session.cancel_timer("eot")
        if self.user.final_text:
            log.info("words not yet answered are dropped by the switch: %r", self.user.final_text)
        self.user = UserTurn()

    async def stop_listening(self) -> None:
        await self.listener.close()  # the STT stream finishes its utterance and reports its usage

    def cancel(self) -> None:
        self.listener.cancel()

    # -- what it hears -----------------------------------------------------------------------

    async def on_voice(self, epoch: int, start_ms: float) -> None:
        """The local VAD heard a burst of voice: barge-in while the agent talks, else a check on the STT."""
        s = self.session
        if epoch != self.detector.epoch:
            return
        if not self.replies.speaking:
            if not self.user.speaking and len(s.stt_targets) > 1:
                s.timer("stt_stall", s.spec.first_result_ms)  # the STT should say speech_started by then
            return
        if s.spec.interruption_enabled:
            log.info("barge-in at %.0f ms of user audio (voice from %.0f ms, local VAD)", s.clock.ms, start_ms)
            self.barge.start(int(start_ms))
            await self.replies.interrupt(confirmed=self.barge.heard_words)

    async def stt_stalled(self) -> None:
        """Voice went in and the STT stream said nothing: it counts as failed, the next STT target takes over."""
        s, lane = self.session, self.listener.lane
        if lane is None or self.user.speaking:
            return
        exc = DeadlineExceeded(f"STT {lane.target}: no speech event within {s.spec.first_result_ms} ms of voice")
        log.warning("%s", exc.message)
        lane.cancel()
        await self.listener.failed(lane, exc, s.stt_targets, s.clock.ms)

    async def on_stt_error(self, lane: SttLane, exc: grpc.aio.AioRpcError) -> None:
        if lane is self.listener.lane:
            log.warning("STT %s failed: %s", lane.target, exc.details())
            await self.listener.failed(lane, exc, self.session.stt_targets, self.session.clock.ms)

    def _bill_lost(self, lane: SttLane) -> None:
        """A stream broke before its Usage came (its service died): the audio written to it is billed, as the
        service would have, under that stream's own ledger record (so what the service wrote is replaced)."""
        if lane.reported or not lane.sent_bytes:
            return
        s = self.session
        usage = common_pb2.Usage(audio_seconds_in=lane.sent_bytes / 2 / s.spec.input_rate, model=lane.target.descriptor)
        log.info("STT %s broke: billing the %.2f s of audio sent to it", lane.target, usage.audio_seconds_in)
        s.emit.usage(0, "stt", usage)
        record_sent("stt", usage, lane.stream_id)

    async def on_stt_end(self, lane: SttLane) -> None:
        if lane is self.listener.lane:
            self.listener.ended = True
            if self.session.closing and self.user.final_text:
                await self.commit_turn()

    async def on_stt(self, lane: SttLane, response) -> None:
        s = self.session
        kind = response.WhichOneof("event")
        if kind == "usage":
            lane.reported = True
            s.emit.usage(0, "stt", response.usage)
        if lane is not self.listener.lane:
            return
        offset = self.listener.offset_ms
        log.debug("stt %s at %.0f ms of audio: %s", kind, s.clock.ms, str(getattr(response, kind)).replace("\n", " "))
        s.cancel_timer("stt_stall")  # the stream is alive
        if kind == "speech_started":
            s.cancel_timer("eot")  # the user goes on
            self._turn_check += 1  # an older verdict is stale
            self._drop_early()
            self.user.speech_started(int(response.speech_started.time_ms + offset))
            if self.replies.speaking and s.spec.interruption_enabled:
                self.barge.start(int(response.speech_started.time_ms + offset))
        elif kind == "interim" and has_words(response.interim.text):
            self.user.interim_result(response.interim.text)
            await self.replies.check_preemption(self.user.text)
            if response.interim.end_candidate:
                self._judge_early(response.interim.end_ms + offset)
            if s.speculative and response.interim.end_candidate and not s.has_timer("eot"):
                # The final decode of a whole utterance is the turn's floor: a reply to the words of a pause is
                # made meanwhile and held; it is released only if the turn ends on the same words
                # (``take_preemption``). Interims of speech still going on start none: most would be dropped,
                # each with the LLM and TTS work (and usage) of a reply nobody hears.
                await self.replies.preempt(self.user.text)
            s.emit.user_transcript(s.next_turn, self.user.text)
            # Only words that later hypotheses keep confirm a barge-in: a first guess on a noise can be a word.
            await self._heard(response.interim.stable_text)
        elif kind == "final":
            text = response.final.text.strip() if has_words(response.final.text) else ""  # "." is no turn
            s.timing.final = time.monotonic()
            self.user.final_result(text, int(response.final.end_ms + offset))
            if text:
                s.emit.user_transcript(s.next_turn, text, final=True)
                await self._heard(text)
        elif kind == "speech_ended":
            end_ms = response.speech_ended.time_ms + offset
            self.user.speech_ended(int(end_ms))
            self.barge.end()
            if self.replies.resume_due and self.replies.suspended is not None and not self.barge.heard_words:
                await self.replies.resume()  # the utterance ended without words: it was noise
            self.listener.utterance_done()
            if self.user.final_text:
                s.timing.end_of_speech = s.clock.wall_at(end_ms)
                await self._end_of_speech(end_ms)

    async def _heard(self, text: str) -> None:
        """The STT heard words: a pending barge-in is real."""
        if self.barge.words(text) and self.replies.suspended is not None:
            await self.replies.confirm()

    # -- the end of the turn -----------------------------------------------------------------

    async def _end_of_speech(self, end_ms: float) -> None:
        """The STT closed an utterance with words at ``end_ms``: end the turn now, or set the timer."""
        s = self.session
        self._turn_check += 1
        text = self.user.final_text
        decision = self.turns.end_of_speech(text, s.clock.ms - end_ms, closing=s.closing)
        if decision.judge is not None:
            # The model judges the user's turn alone, from a little before its first word (as Smart Turn is
            # run and was trained: one turn zero-padded in front); earlier speech in its window lowers the
            # probability of a finished question (bench/smart_turn_window.py).
            samples = self.recent.until(s.clock.ms, self._since_ms())
            early = self._early[1] if self._early is not None and abs(self._early[0] - end_ms) < 1 else None
            s.spawn(self._judge(self._turn_check, end_ms, samples, decision.judge, early), "turn-model")
        else:
            self.verdict = (None, self.turns.target_ms(text))
        if decision.wait_ms <= 0 or s.closing:
            await self.commit_turn()
            return
        s.timer("eot", decision.wait_ms)
        await self.replies.preempt(text)

    async def _judge(self, check: int, end_ms: float, samples, judge: Judge, early: asyncio.Task | None) -> None:
        if early is not None:
            try:  # the model judged this end of speech already, at the pause: only the voice check is left
                judge = dataclasses.replace(judge, use_model=False, probability=await early)
            except Exception:  # noqa: BLE001 (the model runs again below)
                log.warning("the early turn verdict failed", exc_info=True)
        probability = await self.turns.verdict(samples, judge)
        self.session.events.put_nowait(TurnVerdict(check, end_ms, probability))

    def _since_ms(self) -> float | None:
        return None if self.user.start_ms is None else self.user.start_ms - PRE_SPEECH_MS

    def _judge_early(self, end_ms: float) -> None:
        """The STT's end candidate came (its final decode at a pause that started at ``end_ms``): the turn
        model's verdict is made as soon as the audio of its window is in, while the STT still waits out its
        endpointing silence, so the turn can end as soon as the utterance closes."""
        window = self.turns.early_window_ms(self.user.text) if self.recent is not None else None
        if window is None or (self._early is not None and abs(self._early[0] - end_ms) < 1):
            return
        self._drop_early()
        s, since = self.session, self._since_ms()

        async def judge() -> float | None:
            lag_ms = end_ms + window - s.clock.ms
            if lag_ms > 0:
                await asyncio.sleep(lag_ms / 1000)  # the user's audio comes in real time
            samples = self.recent.until(min(s.clock.ms, end_ms + window), since)
            return await self.turns.verdict(samples, Judge(use_model=True, voice_after_ms=0.0))

        self._early = (end_ms, s.spawn(judge(), "turn-model-early"))

    def _drop_early(self) -> None:
        early, self._early = self._early, None
        if early is not None:
            early[1].cancel()

    async def on_verdict(self, check: int, end_ms: float, probability: float | None) -> None:
        s = self.session
        if check != self._turn_check or not s.has_timer("eot"):
            return  # the user went on, or the turn already ended
        target = self.turns.target_ms(self.user.final_text, probability)
        self.verdict = (probability, target)
        wait = target - (s.clock.ms - end_ms)
        log.debug("turn verdict: %s for %r: end of turn after %.0f ms of silence", probability,
                  self.user.final_text, target)
        if wait <= 0:
            await self.commit_turn()
        else:
            s.timer("eot", wait)

    async def commit_turn(self) -> None:
        """The user's turn ends: the agent answers it (with the reply generated ahead when it fits)."""
        s = self.session
        text = self.user.final_text
        if not text:
            return
        s.cancel_timer("eot")
        self._drop_early()
        timing, s.timing = s.timing, TurnTiming()
        timing.decided = time.monotonic()
        timing.stt_model, timing.stt_fallbacks = self.listener.model, self.listener.take_fallbacks()
        self.user = UserTurn()
        await self.replies.settle()
        turn = s.next_turn
        s.next_turn += 1
        if not await s.admitted(turn):
            await self.replies.drop_preemption()
            return
        s.timings[turn] = timing
        ahead = await self.replies.take_preemption(turn, text)
        if ahead is not None:
            log.info("turn %d: user said %r (reply generated ahead)", turn, text)
            self.replies.start(ahead, running=True)
            await ahead.release()
            return
        s.chat.history.append(llm_pb2.ChatMessage(role="user", content=text))
        log.info("turn %d: user said %r", turn, text)
        self.replies.start(Reply(s, turn))
