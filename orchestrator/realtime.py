"""A session on a realtime speech-to-speech model, and the switches between it and the pipeline.

A part of the ``Session`` actor (a base class of it, like ``Hearing``): these
handlers run on the session's one event queue. While ``self.realtime`` holds a
``RealtimeLane``, the user's audio goes to that Converse stream instead of the
STT, the realtime service detects speech and ends turns (server VAD) and
answers, and its events become the session's events:

- speech started: the agent stops (barge-in); the assistant item is truncated
  at the audio the client had been sent, and the history keeps the text the
  service says was heard (``item_truncated``);
- input transcription: user transcripts; the final one goes to the history;
- response created: a new turn; text and audio deltas: agent text and audio,
  paced at real time like a pipeline reply; response done: usage, tool calls,
  and the turn's end once its audio is out.

The session mirrors the conversation in ``chat.history``, so a switch keeps it
both ways: the realtime stream opens with the history replayed as items, and
the LLM streams get the whole history again after a switch back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

import grpc

from voicemesh.errors import Unavailable, error_for_code
from voicemesh.orchestrator.events import TurnTiming, turn_metrics
from voicemesh.orchestrator.fallback import FallbackLog, Target, failure_reason, first_of
from voicemesh.orchestrator.lanes import BROKEN, AudioPump, RealtimeLane
from voicemesh.speech.playout import Pacer, Playout, cut
from voicemesh.orchestrator.reply import ReplyTimes
from voicemesh.orchestrator.turns import UserTurn
from voicemesh.v1 import agent_pb2, llm_pb2, realtime_pb2

log = logging.getLogger(__name__)

A = agent_pb2
CLOSE_TIMEOUT_S = 5.0  # how long a stream left behind by a switch may take to report its usage


@dataclass
class RealtimeTurn:
    """One response of the realtime model: an agent turn."""

    turn_id: int
    response_id: str
    item_id: str
    rate: int
    timing: TurnTiming
    times: ReplyTimes = field(default_factory=ReplyTimes)
    text: str = ""
    status: str = ""  # the response_done status, once done
    stopped: bool = False  # interrupted, cancelled or refused: no more audio goes out
    refused: bool = False  # the key may not start a turn: nothing of it is kept
    truncating: bool = False  # an item_truncate was sent; its item_truncated gives the heard text
    awaiting_tools: bool = False  # the response called tools: the turn goes on with the response to their results
    kept: str | None = None  # the heard text after a truncation
    audio: asyncio.Queue = field(default_factory=asyncio.Queue)  # PCM to play; None ends it
    player: asyncio.Task | None = None

    def __post_init__(self) -> None:
        self.playout = Playout(self.rate)  # what of the audio the client was sent and has played

    def heard_text(self, now: float) -> str:
        """The text of the audio the client has played: the whole text, or its share by audio played."""
        if not self.stopped:
            return self.text
        if self.kept is not None:
            return self.kept
        played, sent = self.playout.played_samples(now), self.playout.sent_samples
        if not sent:
            return ""
        # The service's text deltas run ahead of its audio: the share of text is of the audio it sent.
        return self.text[:cut(self.text, played / max(sent, 1))].strip()


class Realtime:
    """The realtime mode of a Session."""

    realtime: RealtimeLane | None = None
    realtime_turn: RealtimeTurn | None = None
    realtime_ended = False
    _realtime_offset_ms = 0.0  # session audio time of the realtime stream's time 0
    _realtime_interim = ""

    # -- switching -------------------------------------------------------------------------

    async def _open_realtime(self, targets: list[Target]) -> RealtimeLane:
        """Open the first target that accepts the session (its session_updated within the timeout)."""
        spec, fallbacks = self.spec, FallbackLog()
        for target in targets:
            lane = None
            try:
                lane = await RealtimeLane.open(
                    self.clients, target, self.metadata, instructions=self.chat.instructions, input_rate=spec.input_rate,
                    output_rate=spec.output_rate, silence_ms=spec.min_delay_ms,
                    interruption=spec.interruption_enabled, tools=self.chat.tools, history=self.chat.history)
                responses = lane.responses()
                first = await first_of(responses, spec.first_result_ms / 1000, f"realtime {target}")
                if first.WhichOneof("event") != "session_updated":
                    raise Unavailable(f"realtime {target}: expected session_updated, got {first.WhichOneof('event')}")
            except (*BROKEN, StopAsyncIteration) as exc:
                if lane is not None:
                    lane.cancel()
                fallbacks.failed(target, exc if not isinstance(exc, StopAsyncIteration)
                                 else Unavailable(f"realtime {target} ended the stream at once"))
                continue
            self._spawn(self._read_realtime(lane, responses), "realtime")
            lane.pump = AudioPump(lane.audio, lane.done_writing, step=spec.input_rate * 2, spawn=self._spawn,
                                  name="realtime-writer")  # a second per message (the service takes at most two)
            log.info("realtime model %s at %s (history of %d messages replayed)", target.descriptor,
                     target.address, len([m for m in self.chat.history if m.role != "system"]))
            return lane
        raise fallbacks.exhausted("no realtime model answered")

    async def _read_realtime(self, lane: RealtimeLane, responses) -> None:
        try:
            async for response in responses:
                self.events.put_nowait(("realtime", lane, response))
            self.events.put_nowait(("realtime_end", lane, None))
        except grpc.aio.AioRpcError as exc:
            self.events.put_nowait(("realtime_end", lane, exc))

    async def _use_realtime(self, candidates) -> None:
        """Go on with a realtime model (from the pipeline, or from another realtime model)."""
        targets = self.clients.targets("realtime", candidates)
        await self._drop_preemption()
        await self._settle()
        self._cancel_timer("eot")
        if self.user.final_text:
            log.info("words not yet answered are dropped by the switch: %r", self.user.final_text)
        self.user = UserTurn()
        lane = await self._open_realtime(targets)  # the session stays as it is when none answers
        if self.realtime is not None:
            await self._leave_realtime()
        else:
            await self.listener.close()  # the STT stream finishes its utterance and reports its usage
        self.spec.realtime = candidates
        self.realtime, self.realtime_ended = lane, False
        self._realtime_offset_ms, self._realtime_interim = self.clock.ms, ""

    async def _use_pipeline(self) -> None:
        """Go back to STT, LLM and TTS; the LLM streams get the whole history on their next turn."""
        await self.listener.open(self.stt_targets, now_ms=self.clock.ms)
        await self._leave_realtime()
        self.realtime = None
        self.chat.unsync()

    async def _leave_realtime(self) -> None:
        """Stop the realtime turn (kept as heard) and end the stream; its usage still comes in."""
        lane = self.realtime
        turn = self.realtime_turn
        if turn is not None:
            await self._realtime_stop(turn, cancel=True, truncate=False)
            turn.truncating = False
            turn.status = turn.status or "cancelled"
            await self._realtime_finish(turn, force=True)

        async def close() -> None:
            await asyncio.sleep(CLOSE_TIMEOUT_S)
            lane.cancel()

        lane.pump.end()  # what the user said so far goes up, then the half-close
        self._spawn(close(), "realtime-close")

    # -- client messages while on a realtime model ------------------------------------------

    def _realtime_audio(self, pcm: bytes) -> None:
        self.realtime.pump.put(pcm)

    async def _realtime_text(self, text: str) -> None:
        message = llm_pb2.ChatMessage(role="user", content=text)
        self.chat.history.append(message)
        self.timing = TurnTiming(end_of_speech=time.monotonic(), final=time.monotonic())
        await self._realtime_send(item_create=realtime_pb2.ConversationItemCreate(item=message))
        await self._realtime_send(response_create=realtime_pb2.ResponseCreate())

    async def _realtime_send(self, **request) -> None:
        with contextlib.suppress(*BROKEN):  # a broken stream is reported by its reader
            await self.realtime.send(**request)

    async def _realtime_interrupt(self) -> None:
        turn = self.realtime_turn
        if turn is not None and not turn.stopped:
            await self._realtime_stop(turn, cancel=True)

    async def _realtime_instructions(self, instructions: str) -> None:
        await self._realtime_send(session_update=realtime_pb2.RealtimeSessionConfig(instructions=instructions))

    # -- events of the realtime stream -----------------------------------------------------

    async def _on_realtime_end(self, lane: RealtimeLane, exc: grpc.aio.AioRpcError | None) -> None:
        if lane is not self.realtime:
            return
        if self.closing:
            self.realtime_ended = True
            turn = self.realtime_turn
            if turn is not None:  # nothing more of it comes
                turn.status, turn.truncating = turn.status or "incomplete", False
                turn.audio.put_nowait(None)
                await self._realtime_finish(turn)
            if exc is not None:
                self._error(0, exc)
            return
        why = exc if exc is not None else Unavailable(f"realtime {lane.target} ended the stream")
        log.warning("realtime %s failed: %s", lane.target, why)
        turn = self.realtime_turn
        if turn is not None:
            await self._realtime_stop(turn, cancel=False, truncate=False)
            turn.status = turn.status or "failed"
            await self._realtime_finish(turn, force=True)
        others = [t for t in self.clients.targets("realtime", self.spec.realtime) if t != lane.target]
        if not others:  # the session cannot hear any more: it ends with the failure
            raise Unavailable(f"realtime {lane.target} failed and no other realtime model is configured: "
                              f"{failure_reason(why)}")
        self._error(turn.turn_id if turn else 0, why)
        self.realtime = await self._open_realtime(others)  # none answers: the session ends with UNAVAILABLE
        self._realtime_offset_ms, self._realtime_interim = self.clock.ms, ""

    async def _on_realtime(self, lane: RealtimeLane, response: realtime_pb2.ConverseResponse) -> None:
        kind = response.WhichOneof("event")
        event = getattr(response, kind)
        if kind == "response_done":
            self.report_usage(self._realtime_turn_of(event.response_id), "realtime", event.usage)
        if lane is not self.realtime:
            return  # a stream left behind by a switch: only its usage counts
        log.debug("realtime %s: %s", kind, f"{len(event.audio)} bytes" if kind == "audio_delta"
                  else str(event).replace("\n", " "))
        turn = self.realtime_turn
        if kind == "speech_started":
            self._realtime_interim = ""
            if turn is not None and not turn.stopped and self.spec.interruption_enabled:
                log.info("barge-in at %.0f ms of user audio (realtime server VAD)", self.clock.ms)
                await self._realtime_stop(turn, cancel=False)  # the service cancels the response itself
        elif kind == "speech_stopped":
            self.timing.end_of_speech = self.clock.wall_at(self._realtime_offset_ms + event.audio_ms)
        elif kind == "input_transcription":
            await self._realtime_heard(event)
        elif kind == "response_created":
            await self._realtime_response(lane, event)
        elif turn is None or turn.response_id != getattr(event, "response_id", turn.response_id):
            if kind == "error":  # of no turn (an item_truncated of a turn that ended is dropped)
                self._error(0, _realtime_error(event))
        elif kind == "text_delta":
            turn.times.llm_first = turn.times.llm_first or time.monotonic()
            turn.times.tts_first_text = turn.times.tts_first_text or time.monotonic()
            turn.text += event.delta
            if not turn.stopped:
                self._emit(agent_text=A.AgentText(turn_id=turn.turn_id, delta=event.delta))
        elif kind == "audio_delta":
            if not turn.stopped:
                turn.audio.put_nowait(event.audio)
        elif kind == "response_done":
            turn.status = event.status
            if event.tool_calls and not turn.stopped:
                self._realtime_tools(turn, list(event.tool_calls))
                return
            turn.audio.put_nowait(None)
            await self._realtime_finish(turn)
        elif kind == "item_truncated":
            if event.item_id == turn.item_id:
                turn.kept, turn.truncating = event.text.strip(), False
                await self._realtime_finish(turn)
        elif kind == "error":
            if turn.truncating:
                turn.truncating = False  # the service could not cut the item: keep the share played
            self._error(turn.turn_id, _realtime_error(event))
            await self._realtime_finish(turn)

    def _realtime_turn_of(self, response_id: str) -> int:
        turn = self.realtime_turn
        return turn.turn_id if turn is not None and turn.response_id == response_id else 0

    async def _realtime_heard(self, event: realtime_pb2.InputTranscription) -> None:
        if not event.final:
            self._realtime_interim += event.text
            if self._realtime_interim.strip():
                self._emit(user_transcript=A.UserTranscript(turn_id=self.next_turn, text=self._realtime_interim.strip()))
            return
        text, self._realtime_interim = event.text.strip(), ""
        if not text:
            return
        self.timing.final = time.monotonic()
        self.chat.history.append(llm_pb2.ChatMessage(role="user", content=text))
        self._emit(user_transcript=A.UserTranscript(turn_id=self.next_turn, text=text, final=True))
        log.info("turn %d: user said %r (realtime)", self.next_turn, text)

    async def _realtime_response(self, lane: RealtimeLane, event: realtime_pb2.ResponseCreated) -> None:
        previous = self.realtime_turn
        if previous is not None and previous.awaiting_tools:  # the answer to the tool results: the same turn
            previous.response_id, previous.item_id = event.response_id, event.item_id
            previous.status, previous.awaiting_tools = "", False
            return
        timing, self.timing = self.timing, TurnTiming()
        timing.decided, timing.stt_model = time.monotonic(), lane.target.descriptor
        turn = RealtimeTurn(self.next_turn, event.response_id, event.item_id, self.spec.output_rate, timing)
        turn.times.llm_request = time.monotonic()
        self.next_turn += 1
        self.realtime_turn = turn
        if not await self._admitted(turn.turn_id):
            turn.stopped = turn.refused = True
            await self._realtime_send(response_cancel=realtime_pb2.ResponseCancel())
        else:
            self._state(A.AGENT_STATE_THINKING, turn.turn_id)
        turn.player = self._spawn(self._realtime_play(turn, previous), f"realtime-{turn.turn_id}")

    async def _realtime_play(self, turn: RealtimeTurn, previous: RealtimeTurn | None) -> None:
        """Send the turn's audio at real time (after the audio of the turn before it)."""
        if previous is not None and previous.player is not None:
            await asyncio.gather(previous.player, return_exceptions=True)
        pacer = Pacer(turn.rate)
        while (pcm := await turn.audio.get()) is not None:
            await pacer.wait()
            if turn.stopped:
                continue
            samples = len(pcm) // 2
            pacer.advance(samples)
            if turn.times.first_audio is None:
                turn.times.first_audio = time.monotonic()
                self._state(A.AGENT_STATE_SPEAKING, turn.turn_id)
            self.outbox.put(A.SessionResponse(agent_audio=A.AgentAudio(
                turn_id=turn.turn_id, audio=pcm, sample_rate_hz=turn.rate)),
                on_sent=lambda n=samples: turn.playout.sent(n, time.monotonic()))
        self.events.put_nowait(("realtime_played", turn))

    async def _on_realtime_played(self, turn: RealtimeTurn) -> None:
        await self._realtime_finish(turn)

    async def _realtime_stop(self, turn: RealtimeTurn, *, cancel: bool, truncate: bool = True) -> None:
        """Stop the turn's audio now; cut its item at what the client was sent (and cancel the response)."""
        if turn.stopped:
            return
        turn.stopped = True
        self.outbox.drop_audio(turn.turn_id)
        turn.audio.put_nowait(None)
        if cancel and not turn.status:
            await self._realtime_send(response_cancel=realtime_pb2.ResponseCancel())
        if truncate and turn.playout.sent_samples:
            end_ms = turn.playout.played_samples(time.monotonic()) * 1000 // turn.rate
            turn.truncating = True
            await self._realtime_send(item_truncate=realtime_pb2.ItemTruncate(item_id=turn.item_id,
                                                                               audio_end_ms=int(end_ms)))
        self._state(A.AGENT_STATE_LISTENING, turn.turn_id)

    async def _realtime_finish(self, turn: RealtimeTurn, *, force: bool = False) -> None:
        """End the turn once the response is done, its audio out and its truncation answered."""
        if self.realtime_turn is not turn:
            return
        waiting = turn.truncating or (turn.awaiting_tools and not turn.stopped)
        if not force and (not turn.status or waiting or (turn.player is not None and not turn.player.done())):
            return
        self.realtime_turn = None
        if turn.refused:
            return
        kept = turn.heard_text(time.monotonic())
        if kept:
            self.chat.history.append(llm_pb2.ChatMessage(role="assistant", content=kept))
        self._emit(metrics=turn_metrics(turn.turn_id, turn.timing, turn.times,
                                        models=(turn.timing.stt_model, turn.timing.stt_model), fallbacks=[]))
        interrupted = turn.stopped and turn.status != "completed" or turn.kept is not None
        self._emit(turn_done=A.AgentTurnDone(turn_id=turn.turn_id, text=kept, interrupted=interrupted))
        self._state(A.AGENT_STATE_LISTENING, turn.turn_id)

    def _realtime_tools(self, turn: RealtimeTurn, calls: list[llm_pb2.ToolCall]) -> None:
        """The model called tools: the client runs them; their results go back as items, then a response to
        them goes on with the same turn (as a pipeline reply does)."""
        self.chat.history.append(llm_pb2.ChatMessage(role="assistant", content=turn.text, tool_calls=calls))
        turn.text, turn.awaiting_tools = "", True  # the text is in the history with the calls
        waits = [self.expect_tool_result(call.id) for call in calls]
        for call in calls:
            self._emit(tool_call=call)

        async def answer() -> None:
            outputs = await asyncio.gather(*waits)
            self.events.put_nowait(("realtime_tool_results", self.realtime, turn, calls, outputs))

        self._spawn(answer(), f"realtime-tools-{turn.turn_id}")

    async def _on_realtime_tool_results(self, lane: RealtimeLane, turn: RealtimeTurn, calls, outputs) -> None:
        """The results go into the history and up as items; the model answers them unless the user spoke."""
        for call, output in zip(calls, outputs, strict=True):
            message = llm_pb2.ChatMessage(role="tool", content=output, tool_call_id=call.id)
            self.chat.history.append(message)
            if lane is self.realtime:
                await self._realtime_send(item_create=realtime_pb2.ConversationItemCreate(item=message))
        if lane is self.realtime and turn is self.realtime_turn and not turn.stopped:
            await self._realtime_send(response_create=realtime_pb2.ResponseCreate())


def _realtime_error(event: realtime_pb2.RealtimeError):
    """A realtime error event as the session's error (its code and message kept)."""
    return error_for_code(event.code or "UNKNOWN", f"realtime: {event.message}")
