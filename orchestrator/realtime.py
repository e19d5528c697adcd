"""The realtime mode of a session: a realtime speech-to-speech model in place of the pipeline.

While the session is in this mode, the user's audio goes to one Converse
stream (``self.lane``) instead of the STT; the realtime service detects
speech and ends turns (server VAD) and answers, and its events become the
session's events:

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
from typing import TYPE_CHECKING

import grpc

from voicemesh.errors import InvalidInput, Unavailable
from voicemesh.orchestrator.events import TurnTiming
from voicemesh.orchestrator.fallback import FallbackLog, Target, failure_reason, first_of
from voicemesh.orchestrator.inbox import RealtimeEnded, RealtimeEvent, RealtimePlayed, RealtimeToolResults
from voicemesh.orchestrator.lanes import BROKEN, AudioPump, RealtimeLane, closed_for_idling
from voicemesh.orchestrator.realtime_turn import RealtimeTurn, realtime_error
from voicemesh.speech.playout import Pacer
from voicemesh.v1 import agent_pb2, llm_pb2, realtime_pb2

if TYPE_CHECKING:
    from voicemesh.orchestrator.session import Session

log = logging.getLogger(__name__)

A = agent_pb2
CLOSE_TIMEOUT_S = 5.0  # how long a stream left behind by a switch may take to report its usage


class RealtimeMode:
    """The session on a realtime model (a ``Mode``)."""

    def __init__(self, session: Session):
        self.session = session
        self.lane: RealtimeLane | None = None
        self.turn: RealtimeTurn | None = None
        self.ended = False  # the stream ended after the client's
        self.offset_ms = 0.0  # session audio time of the stream's time 0
        self.interim = ""

    # -- the Mode interface ----------------------------------------------------------------

    async def audio(self, pcm: bytes) -> None:
        self.lane.pump.put(pcm)

    async def text(self, text: str) -> None:
        s = self.session
        message = llm_pb2.ChatMessage(role="user", content=text)
        s.chat.history.append(message)
        s.timing = TurnTiming(end_of_speech=time.monotonic(), final=time.monotonic())
        await self._send(item_create=realtime_pb2.ConversationItemCreate(item=message))
        await self._send(response_create=realtime_pb2.ResponseCreate())

    async def say(self, text: str, add_to_history: bool) -> None:
        self.session.emit.error(0, InvalidInput("Say is not available while the session is on a realtime model"))

    async def interrupt(self) -> None:
        turn = self.turn
        if turn is not None and not turn.stopped:
            await self._stop(turn, cancel=True)

    async def instructions(self, instructions: str) -> None:
        await self._send(session_update=realtime_pb2.RealtimeSessionConfig(instructions=instructions))

    def end_input(self) -> None:
        self.lane.pump.end()  # the service answers what it heard, then ends

    def busy(self) -> bool:
        return not self.ended or self.turn is not None

    async def leave(self) -> None:
        """Stop the realtime turn (kept as heard) and end the stream; its usage still comes in."""
        lane = self.lane
        turn = self.turn
        if turn is not None:
            await self._stop(turn, cancel=True, truncate=False)
            turn.truncating = False
            turn.status = turn.status or "cancelled"
            await self._finish(turn, force=True)
        self.lane = None

        async def close() -> None:
            await asyncio.sleep(CLOSE_TIMEOUT_S)
            lane.cancel()

        lane.pump.end()  # what the user said so far goes up, then the half-close
        self.session.spawn(close(), "realtime-close")

    def cancel(self) -> None:
        if self.lane is not None:
            self.lane.cancel()

    # -- the stream ------------------------------------------------------------------------

    async def open(self, targets: list[Target]) -> RealtimeLane:
        """Open the first target that accepts the session (its session_updated within the timeout)."""
        s = self.session
        spec, fallbacks = s.spec, FallbackLog()
        for target in targets:
            lane = None
            try:
                lane = await RealtimeLane.open(
                    s.clients, target, s.metadata, instructions=s.chat.instructions, input_rate=spec.input_rate,
                    output_rate=spec.output_rate, silence_ms=spec.min_delay_ms,
                    interruption=spec.interruption_enabled, tools=s.chat.tools, history=s.chat.history)
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
            s.spawn(self._read(lane, responses), "realtime")
            lane.pump = AudioPump(lane.audio, lane.done_writing, step=spec.input_rate * 2, spawn=s.spawn,
                                  name="realtime-writer")  # a second per message (the service takes at most two)
            log.info("realtime model %s at %s (history of %d messages replayed)", target.descriptor,
                     target.address, len([m for m in s.chat.history if m.role != "system"]))
            return lane
        raise fallbacks.exhausted("no realtime model answered")

    def enter(self, lane: RealtimeLane) -> None:
        """Go on with ``lane`` (opened by ``open``) as the session's stream."""
        self.lane, self.ended = lane, False
        self.offset_ms, self.interim = self.session.clock.ms, ""

    async def _read(self, lane: RealtimeLane, responses) -> None:
        post = self.session.events.put_nowait
        try:
            async for response in responses:
                post(RealtimeEvent(lane, response))
            post(RealtimeEnded(lane, None))
        except grpc.aio.AioRpcError as exc:
            post(RealtimeEnded(lane, exc))

    async def _send(self, **request) -> None:
        with contextlib.suppress(*BROKEN):  # a broken stream is reported by its reader
            await self.lane.send(**request)

    # -- events of the stream ----------------------------------------------------------------

    async def on_end(self, lane: RealtimeLane, exc: grpc.aio.AioRpcError | None) -> None:
        s = self.session
        if lane is not self.lane:
            return
        if s.closing:
            self.ended = True
            turn = self.turn
            if turn is not None:  # nothing more of it comes
                turn.status, turn.truncating = turn.status or "incomplete", False
                turn.audio.put_nowait(None)
                await self._finish(turn)
            if exc is not None:
                s.emit.error(0, exc)
            return
        if self.turn is None and closed_for_idling(exc):
            # Closed for idling (nothing either way for the service's --idle-timeout-s: a client that only
            # writes now and then), not failed: the same targets, the history replayed, no error event.
            log.info("realtime %s closed the session's idle stream: opening it again", lane.target)
            lane.pump.stop()
            self.enter(await self.open(s.clients.targets("realtime", s.spec.realtime)))
            return
        why = exc if exc is not None else Unavailable(f"realtime {lane.target} ended the stream")
        log.warning("realtime %s failed: %s", lane.target, why)
        turn = self.turn
        if turn is not None:
            await self._stop(turn, cancel=False, truncate=False)
            turn.status = turn.status or "failed"
            await self._finish(turn, force=True)
        others = [t for t in s.clients.targets("realtime", s.spec.realtime) if t != lane.target]
        if not others:  # the session cannot hear any more: it ends with the failure
            raise Unavailable(f"realtime {lane.target} failed and no other realtime model is configured: "
                              f"{failure_reason(why)}")
        s.emit.error(turn.turn_id if turn else 0, why)
        self.enter(await self.open(others))  # none answers: the session ends with UNAVAILABLE

    async def on_event(self, lane: RealtimeLane, response: realtime_pb2.ConverseResponse) -> None:
        s = self.session
        kind = response.WhichOneof("event")
        event = getattr(response, kind)
        if kind == "response_done":
            s.emit.usage(self._turn_of(event.response_id), "realtime", event.usage)
        if lane is not self.lane:
            return  # a stream left behind by a switch: only its usage counts
        log.debug("realtime %s: %s", kind, f"{len(event.audio)} bytes" if kind == "audio_delta"
                  else str(event).replace("\n", " "))
        turn = self.turn
        if kind == "speech_started":
            self.interim = ""
            if turn is not None and not turn.stopped and s.spec.interruption_enabled:
                log.info("barge-in at %.0f ms of user audio (realtime server VAD)", s.clock.ms)
                await self._stop(turn, cancel=False)  # the service cancels the response itself
        elif kind == "speech_stopped":
            s.timing.end_of_speech = s.clock.wall_at(self.offset_ms + event.audio_ms)
        elif kind == "input_transcription":
            await self._heard(event)
        elif kind == "response_created":
            await self._response(lane, event)
        elif turn is None or turn.response_id != getattr(event, "response_id", turn.response_id):
            if kind == "error":  # of no turn (an item_truncated of a turn that ended is dropped)
                s.emit.error(0, realtime_error(event))
        elif kind == "text_delta":
            turn.times.llm_first = turn.times.llm_first or time.monotonic()
            turn.times.tts_first_text = turn.times.tts_first_text or time.monotonic()
            turn.text += event.delta
            if not turn.stopped:
                s.emit.agent_text(turn.turn_id, event.delta)
        elif kind == "audio_delta":
            if not turn.stopped:
                turn.audio.put_nowait(event.audio)
        elif kind == "response_done":
            turn.status = event.status
            if event.tool_calls and not turn.stopped:
                self._tools(turn, list(event.tool_calls))
                return
            turn.audio.put_nowait(None)
            await self._finish(turn)
        elif kind == "item_truncated":
            if event.item_id == turn.item_id:
                turn.kept, turn.truncating = event.text.strip(), False
                await self._finish(turn)
        elif kind == "error":
            if turn.truncating:
                turn.truncating = False  # the service could not cut the item: keep the share played
            s.emit.error(turn.turn_id, realtime_error(event))
            await self._finish(turn)

    def _turn_of(self, response_id: str) -> int:
        turn = self.turn
        return turn.turn_id if turn is not None and turn.response_id == response_id else 0

    async def _heard(self, event: realtime_pb2.InputTranscription) -> None:
        s = self.session
        if not event.final:
            self.interim += event.text
            if self.interim.strip():
                s.emit.user_transcript(s.next_turn, self.interim.strip())
            return
        text, self.interim = event.text.strip(), ""
        if not text:
            return
        s.timing.final = time.monotonic()
        s.chat.history.append(llm_pb2.ChatMessage(role="user", content=text))
        s.emit.user_transcript(s.next_turn, text, final=True)
        log.info("turn %d: user said %r (realtime)", s.next_turn, text)

    async def _response(self, lane: RealtimeLane, event: realtime_pb2.ResponseCreated) -> None:
        s = self.session
        previous = self.turn
        if previous is not None and previous.awaiting_tools:  # the answer to the tool results: the same turn
            previous.response_id, previous.item_id = event.response_id, event.item_id
            previous.status, previous.awaiting_tools = "", False
            return
        timing, s.timing = s.timing, TurnTiming()
        timing.decided, timing.stt_model = time.monotonic(), lane.target.descriptor
        turn = RealtimeTurn(s.next_turn, event.response_id, event.item_id, s.spec.output_rate, timing)
        turn.times.llm_request = time.monotonic()
        s.next_turn += 1
        self.turn = turn
        if not await s.admitted(turn.turn_id):
            turn.stopped = turn.refused = True
            await self._send(response_cancel=realtime_pb2.ResponseCancel())
        else:
            s.emit.state(A.AGENT_STATE_THINKING, turn.turn_id)
        turn.player = s.spawn(self._play(turn, previous), f"realtime-{turn.turn_id}")

    async def _play(self, turn: RealtimeTurn, previous: RealtimeTurn | None) -> None:
        """Send the turn's audio at real time (after the audio of the turn before it)."""
        s = self.session
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
                s.emit.state(A.AGENT_STATE_SPEAKING, turn.turn_id)
            s.emit.agent_audio(turn.turn_id, pcm, turn.rate,
                               on_sent=lambda n=samples: turn.playout.sent(n, time.monotonic()))
        s.events.put_nowait(RealtimePlayed(turn))

    async def on_played(self, turn: RealtimeTurn) -> None:
        await self._finish(turn)

    async def _stop(self, turn: RealtimeTurn, *, cancel: bool, truncate: bool = True) -> None:
        """Stop the turn's audio now; cut its item at what the client was sent (and cancel the response)."""
        if turn.stopped:
            return
        s = self.session
        turn.stopped = True
        s.emit.drop_audio(turn.turn_id)
        turn.audio.put_nowait(None)
        if cancel and not turn.status:
            await self._send(response_cancel=realtime_pb2.ResponseCancel())
        if truncate and turn.playout.sent_samples:
            end_ms = turn.playout.played_samples(time.monotonic()) * 1000 // turn.rate
            turn.truncating = True
            await self._send(item_truncate=realtime_pb2.ItemTruncate(item_id=turn.item_id,
                                                                     audio_end_ms=int(end_ms)))
        s.emit.state(A.AGENT_STATE_LISTENING, turn.turn_id)

    async def _finish(self, turn: RealtimeTurn, *, force: bool = False) -> None:
        """End the turn once the response is done, its audio out and its truncation answered."""
        if self.turn is not turn:
            return
        waiting = turn.truncating or (turn.awaiting_tools and not turn.stopped)
        if not force and (not turn.status or waiting or (turn.player is not None and not turn.player.done())):
            return
        s = self.session
        self.turn = None
        if turn.refused:
            return
        kept = turn.heard_text(time.monotonic())
        if kept:
            s.chat.history.append(llm_pb2.ChatMessage(role="assistant", content=kept))
        s.emit.metrics(turn.turn_id, turn.timing, turn.times, models=(turn.timing.stt_model, turn.timing.stt_model),
                       fallbacks=[])
        interrupted = turn.stopped and turn.status != "completed" or turn.kept is not None
        s.emit.turn_done(turn.turn_id, kept, interrupted=interrupted)
        s.emit.state(A.AGENT_STATE_LISTENING, turn.turn_id)

    def _tools(self, turn: RealtimeTurn, calls: list[llm_pb2.ToolCall]) -> None:
        """The model called tools: the client runs them; their results go back as items, then a response to
        them goes on with the same turn (as a pipeline reply does)."""
        s = self.session
        s.chat.history.append(llm_pb2.ChatMessage(role="assistant", content=turn.text, tool_calls=calls))
        turn.text, turn.awaiting_tools = "", True  # the text is in the history with the calls
        waits = [s.expect_tool_result(call.id) for call in calls]
        for call in calls:
            s.emit.tool_call(call)

        async def answer() -> None:
            outputs = await asyncio.gather(*waits)
            s.events.put_nowait(RealtimeToolResults(self.lane, turn, calls, outputs))  # the stream of now

        s.spawn(answer(), f"realtime-tools-{turn.turn_id}")

    async def on_tool_results(self, lane: RealtimeLane, turn: RealtimeTurn, calls, outputs) -> None:
        """The results go into the history and up as items; the model answers them unless the user spoke."""
        for call, output in zip(calls, outputs, strict=True):
            message = llm_pb2.ChatMessage(role="tool", content=output, tool_call_id=call.id)
            self.session.chat.history.append(message)
            if lane is not None and lane is self.lane:
                await self._send(item_create=realtime_pb2.ConversationItemCreate(item=message))
        if lane is not None and lane is self.lane and turn is self.turn and not turn.stopped:
            await self._send(response_create=realtime_pb2.ResponseCreate())
