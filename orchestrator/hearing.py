"""What the session does with what it hears: STT events, the local VAD, barge-in.

A part of the ``Session`` actor (a base class of it), kept apart so each file
stays small: these handlers run on the session's one event queue like the
rest and use its state (``user``, ``barge``, ``reply``, ``clock``, timers).
"""

from __future__ import annotations

import logging
import time

import grpc

from voicemesh.errors import DeadlineExceeded
from voicemesh.orchestrator.lanes import SttLane
from voicemesh.orchestrator.turns import has_words
from voicemesh.v1 import agent_pb2

log = logging.getLogger(__name__)


class Hearing:
    """STT and VAD event handlers of a Session."""

    async def _on_vad(self, epoch: int, start_ms: float) -> None:
        """The local VAD heard a burst of voice: barge-in while the agent talks, else a check on the STT."""
        if epoch != self.detector.epoch:
            return
        if self.reply is None or self.reply.stopped:
            if not self.user.speaking and len(self.stt_targets) > 1:
                self._timer("stt_stall", self.spec.first_result_ms)  # the STT should say speech_started by then
            return
        if self.spec.interruption_enabled:
            log.info("barge-in at %.0f ms of user audio (voice from %.0f ms, local VAD)", self.clock.ms, start_ms)
            self.barge.start(int(start_ms))
            await self._interrupt(confirmed=self.barge.heard_words)

    async def _stt_stalled(self) -> None:
        """Voice went in and the STT stream said nothing: it counts as failed, the next STT target takes over."""
        lane = self.listener.lane
        if lane is None or self.user.speaking:
            return
        exc = DeadlineExceeded(f"STT {lane.target}: no speech event within {self.spec.first_result_ms} ms of voice")
        log.warning("%s", exc.message)
        lane.cancel()
        await self.listener.failed(lane, exc, self.stt_targets, self.clock.ms)

    async def _check_barge_in(self) -> None:
        if self.barge.due(self.clock.ms) and self.reply is not None and not self.reply.stopped:
            log.info("barge-in at %.0f ms of user audio (speech from %d ms)", self.clock.ms, self.barge.started_ms)
            await self._interrupt(confirmed=self.barge.heard_words)

    async def _on_stt_error(self, lane: SttLane, exc: grpc.aio.AioRpcError) -> None:
        if lane is self.listener.lane:
            log.warning("STT %s failed: %s", lane.target, exc.details())
            await self.listener.failed(lane, exc, self.stt_targets, self.clock.ms)

    async def _on_stt_end(self, lane: SttLane) -> None:
        if lane is self.listener.lane:
            self.listener.ended = True
            if self.closing and self.user.final_text:
                await self._commit_user_turn()

    async def _on_stt(self, lane: SttLane, response) -> None:
        kind = response.WhichOneof("event")
        if kind == "usage":
            self.report_usage(0, "stt", response.usage)
        if lane is not self.listener.lane:
            return
        offset = self.listener.offset_ms
        log.debug("stt %s at %.0f ms of audio: %s", kind, self.clock.ms, str(getattr(response, kind)).replace("\n", " "))
        self._cancel_timer("stt_stall")  # the stream is alive
        if kind == "speech_started":
            self._cancel_timer("eot")  # the user goes on
            self._user_goes_on()
            self.user.speech_started()
            if self.reply is not None and not self.reply.stopped and self.spec.interruption_enabled:
                self.barge.start(int(response.speech_started.time_ms + offset))
        elif kind == "interim" and has_words(response.interim.text):
            self.user.interim_result(response.interim.text)
            await self._check_preemption()
            self._emit(user_transcript=agent_pb2.UserTranscript(turn_id=self.next_turn, text=self.user.text))
            # Only words that later hypotheses keep confirm a barge-in: a first guess on a noise can be a word.
            await self._heard(response.interim.stable_text)
        elif kind == "final":
            text = response.final.text.strip() if has_words(response.final.text) else ""  # "." is no turn
            self.timing.final = time.monotonic()
            self.user.final_result(text, int(response.final.end_ms + offset))
            if text:
                self._emit(user_transcript=agent_pb2.UserTranscript(turn_id=self.next_turn, text=text, final=True))
                await self._heard(text)
        elif kind == "speech_ended":
            end_ms = response.speech_ended.time_ms + offset
            self.user.speech_ended(int(end_ms))
            self.barge.end()
            if self._resume_due and self.suspended is not None and not self.barge.heard_words:
                await self._resume()  # the utterance ended without words: it was noise
            self.listener.utterance_done()
            if self.user.final_text:
                self.timing.end_of_speech = self.clock.wall_at(end_ms)
                await self._end_of_speech(end_ms)

    async def _heard(self, text: str) -> None:
        """The STT heard words: a pending barge-in is real."""
        if self.barge.words(text) and self.suspended is not None:
            await self._confirm_interruption()
