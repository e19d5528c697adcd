"""One conversation: the state of a Session stream, run as a single actor.

Everything that changes the session's state happens in ``_main``, one event
at a time: client messages, STT events, timers and finished replies are put
on one queue. Replies (``reply.py``) run as tasks beside it and reach back
only through the few methods at the end of this class.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

import grpc

from voicemesh.errors import InvalidInput, Unavailable, VoiceMeshError
from voicemesh.orchestrator import config as session_config
from voicemesh.orchestrator.clients import MeshClients, call_metadata
from voicemesh.orchestrator.fallback import FallbackLog, Target
from voicemesh.orchestrator.lanes import LlmLane, SttLane
from voicemesh.orchestrator.outbox import AudioClock, Outbox
from voicemesh.orchestrator.reply import Reply
from voicemesh.orchestrator.turns import BargeIn, UserTurn, endpoint_wait_ms
from voicemesh.runtime.status import error_detail
from voicemesh.runtime.streams import reject_second_config
from voicemesh.v1 import agent_pb2, llm_pb2

log = logging.getLogger(__name__)

A = agent_pb2
MAX_CHUNK_S = 5.0  # longest audio message accepted from a client
REPLAY_S = 30.0  # audio kept to replay into a new STT stream after a failover


@dataclass
class TurnTiming:
    """Wall-clock marks (monotonic seconds) of the user's side of a turn."""

    end_of_speech: float | None = None
    final: float | None = None
    decided: float | None = None
    stt_model: str = ""
    stt_fallbacks: list[str] = field(default_factory=list)


def _ms(start: float | None, end: float | None) -> float:
    return max(0.0, (end - start) * 1000) if start is not None and end is not None else 0.0


class Session:
    """One conversation over the mesh."""

    def __init__(self, spec: session_config.SessionSpec, clients: MeshClients, *, session_id: str,
                 authorization: str | None = None, max_tokens: int = 0):
        self.spec, self.clients, self.id = spec, clients, session_id
        self.metadata = call_metadata(authorization, session_id)
        self.max_tokens = max_tokens
        self.outbox = Outbox()
        self.events: asyncio.Queue = asyncio.Queue()
        self.clock = AudioClock(spec.input_rate)
        self.history: list[llm_pb2.ChatMessage] = []
        if spec.instructions:
            self.history.append(llm_pb2.ChatMessage(role="system", content=spec.instructions))
        self.stt_targets = clients.targets("stt", spec.stt)
        self.llm_targets = clients.targets("llm", spec.llm)
        self.tts_targets = clients.targets("tts", spec.tts)
        self.llm_current: Target | None = None
        self._llm_lanes: dict[Target, LlmLane] = {}
        self.stt: SttLane | None = None
        self._stt_offset_ms = 0.0
        self._stt_fallbacks = FallbackLog()
        self._replay: list[bytes] = []
        self.user = UserTurn()
        self.timing = TurnTiming()
        self.barge = BargeIn(spec.min_interruption_ms)
        self.next_turn = 1
        self.reply: Reply | None = None
        self.suspended: tuple[Reply, int] | None = None  # barged-in reply waiting for words or resume
        self._timings: dict[int, TurnTiming] = {}
        self._tasks: set[asyncio.Task] = set()
        self._timers: dict[str, tuple[asyncio.TimerHandle, object]] = {}
        self._tools: dict[str, asyncio.Future] = {}
        self._generations: dict[str, int] = {}
        self.closing = self.stt_ended = False
        self._resume_due = False  # the false-interruption timeout passed while the user still spoke

    # -- the stream --------------------------------------------------------------------------

    async def run(self, requests):
        """SessionResponse messages until the conversation ends; cancels everything it started."""
        try:
            self._spawn(self._read_client(requests), "client")
            await self._open_stt(self.stt_targets)
            self.outbox.put(A.SessionResponse(started=A.SessionStarted(session_id=self.id)))
            self._state(A.AGENT_STATE_LISTENING, 0)
            self._spawn(self._main(), "main")
            while (message := await self.outbox.get()) is not None:
                yield message
        finally:
            await self._shutdown()

    def _spawn(self, coro, name: str) -> asyncio.Task:
        task = asyncio.create_task(coro, name=f"session-{self.id}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _read_client(self, requests) -> None:
        try:
            async for request in requests:
                self.events.put_nowait(("client", request))
            self.events.put_nowait(("client_end",))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the client's stream broke: end the session with it
            self.outbox.end(exc)

    async def _main(self) -> None:
        try:
            while not self._finished():
                kind, *args = await self.events.get()
                await getattr(self, f"_on_{kind}")(*args)
            self.outbox.end()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.outbox.end(exc)

    def _finished(self) -> bool:
        return (self.closing and self.stt_ended and self.reply is None and self.suspended is None
                and not self.user.final_text and "eot" not in self._timers)

    async def _shutdown(self) -> None:
        for handle, _token in self._timers.values():
            handle.cancel()
        for future in self._tools.values():
            future.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.stt is not None:
            self.stt.cancel()
        for lane in list(self._llm_lanes.values()):
            await lane.close()
        self._llm_lanes.clear()

    def _emit(self, **event) -> None:
        self.outbox.put(A.SessionResponse(**event))

    def _state(self, state: int, turn_id: int) -> None:
        self._emit(state=A.AgentStateChanged(state=state, turn_id=turn_id))

    def _error(self, turn_id: int, exc: BaseException) -> None:
        if isinstance(exc, grpc.aio.AioRpcError):
            code, message, detail = exc.code().name, exc.details() or "", None
        elif isinstance(exc, VoiceMeshError):
            code, message, detail = exc.code, exc.message, error_detail(exc)
        else:
            code, message, detail = "INTERNAL", f"{type(exc).__name__}: {exc}", None
        self._emit(error=A.SessionError(turn_id=turn_id, code=code, message=message, detail=detail))

    def _timer(self, name: str, delay_ms: float) -> None:
        self._cancel_timer(name)
        token = object()
        handle = asyncio.get_running_loop().call_later(delay_ms / 1000, self.events.put_nowait, ("timer", name, token))
        self._timers[name] = (handle, token)

    def _cancel_timer(self, name: str) -> None:
        entry = self._timers.pop(name, None)
        if entry is not None:
            entry[0].cancel()

    async def _on_timer(self, name: str, token: object) -> None:
        entry = self._timers.get(name)
        if entry is None or entry[1] is not token:
            return  # cancelled or replaced after it fired
        del self._timers[name]
        if name == "eot":
            await self._commit_user_turn()
        elif name == "resume":
            if self.user.speaking:
                self._resume_due = True  # decide when the STT closes the utterance
            else:
                await self._resume()

    # -- client messages -----------------------------------------------------------------------

    async def _on_client(self, request: A.SessionRequest) -> None:
        kind = request.WhichOneof("request")
        reject_second_config(kind)
        if kind == "audio":
            await self._audio(request.audio)
        elif kind == "text":
            await self._user_text(request.text)
        elif kind == "update_models":
            try:
                await self._update_models(request.update_models)
            except VoiceMeshError as exc:  # a bad update leaves the session on its models
                self._error(0, exc)
        elif kind == "interrupt":
            await self._interrupt(confirmed=True)
        elif kind == "say":
            await self._say(request.say.text, request.say.add_to_history)
        elif kind == "tool_result":
            future = self._tools.pop(request.tool_result.call_id, None)
            if future is None or future.done():
                self._error(0, InvalidInput(f"tool_result for unknown call id {request.tool_result.call_id!r}"))
            else:
                future.set_result(request.tool_result.output)

    async def _on_client_end(self) -> None:
        self.closing = True
        if self.stt is not None:
            with contextlib.suppress(grpc.aio.AioRpcError, grpc.aio.UsageError):
                await self.stt.done_writing()

    async def _audio(self, pcm: bytes) -> None:
        if len(pcm) % 2:
            raise InvalidInput("audio must be PCM s16le: an even number of bytes")
        if len(pcm) > MAX_CHUNK_S * self.spec.input_rate * 2:
            raise InvalidInput(f"audio message longer than {MAX_CHUNK_S:.0f} s; send chunks of 10-100 ms")
        self.clock.received(len(pcm) // 2)
        self._replay.append(pcm)
        step = self.spec.input_rate * 2  # one second per STT message
        if self.stt is not None:
            with contextlib.suppress(grpc.aio.AioRpcError, grpc.aio.UsageError):  # the reader reports it
                for start in range(0, len(pcm), step):
                    await self.stt.audio(pcm[start:start + step])
        if self.barge.due(self.clock.ms) and self.reply is not None and not self.reply.stopped:
            log.info("barge-in at %.0f ms of user audio", self.clock.ms)
            await self._interrupt(confirmed=self.barge.heard_words)

    async def _user_text(self, text: str) -> None:
        if not text.strip():
            raise InvalidInput("text message is empty")
        now = time.monotonic()
        self.timing = TurnTiming(end_of_speech=now, final=now, decided=now)
        self.user = UserTurn(parts=[text.strip()])
        await self._commit_user_turn()

    async def _say(self, text: str, add_to_history: bool) -> None:
        if not text.strip():
            raise InvalidInput("Say.text is empty")
        await self._settle()
        turn = self.next_turn
        self.next_turn += 1
        self._timings[turn] = TurnTiming(decided=time.monotonic())
        self._start_reply(Reply(self, turn, say=text), add_to_history=add_to_history)

    async def _update_models(self, update: A.UpdateModels) -> None:
        mesh = self.clients.mesh
        if update.HasField("realtime") and update.realtime.candidates:
            raise InvalidInput("realtime models are not served by this orchestrator")
        stt = session_config.candidates(update.stt, "stt", mesh) if update.stt.candidates else None
        llm = session_config.candidates(update.llm, "llm", mesh) if update.llm.candidates else None
        tts = session_config.candidates(update.tts, "tts", mesh, speech=True) if update.tts.candidates else None
        if tts is not None:
            self.spec.tts, self.tts_targets = tts, self.clients.targets("tts", tts)
        if llm is not None:
            self.spec.llm, self.llm_targets, self.llm_current = llm, self.clients.targets("llm", llm), None
            for target in [t for t in self._llm_lanes if self.reply is None or self.reply.lane_target != t]:
                await self.drop_llm_lane(target)
        if update.instructions:
            system = llm_pb2.ChatMessage(role="system", content=update.instructions)
            if self.history and self.history[0].role == "system":
                self.history[0] = system
            else:
                self.history.insert(0, system)
            for lane in self._llm_lanes.values():
                lane.synced = None
        if stt is not None:
            self.spec.stt, self.stt_targets = stt, self.clients.targets("stt", stt)
            old = self.stt
            await self._open_stt(self.stt_targets)
            if old is not None:
                with contextlib.suppress(grpc.aio.AioRpcError, grpc.aio.UsageError):
                    await old.done_writing()
        log.info("models updated: stt=%s llm=%s tts=%s", stt and stt[0].descriptor, llm and llm[0].descriptor,
                 tts and tts[0].descriptor)

    # -- speech-to-text ------------------------------------------------------------------------

    async def _open_stt(self, order: list[Target], replay: bool = False) -> None:
        for target in order:
            try:
                lane = await SttLane.open(self.clients, target, self.metadata, rate=self.spec.input_rate,
                                          min_silence_ms=self.spec.min_delay_ms)
                audio = b"".join(self._replay) if replay else b""
                self._stt_offset_ms = self.clock.ms - len(audio) / 2 * 1000 / self.spec.input_rate
                step = self.spec.input_rate * 2
                for start in range(0, len(audio), step):
                    await lane.audio(audio[start:start + step])
            except (grpc.aio.AioRpcError, VoiceMeshError) as exc:
                self._stt_fallbacks.failed(target, exc)
                continue
            self.stt, self.timing.stt_model, self.stt_ended = lane, target.descriptor, False
            self._spawn(self._read_stt(lane), "stt")
            return
        raise Unavailable("no speech-to-text service answered: " + "; ".join(self._stt_fallbacks.entries))

    async def _read_stt(self, lane: SttLane) -> None:
        try:
            async for response in lane.responses():
                self.events.put_nowait(("stt", lane, response))
            self.events.put_nowait(("stt_end", lane))
        except grpc.aio.AioRpcError as exc:
            self.events.put_nowait(("stt_error", lane, exc))

    async def _on_stt_error(self, lane: SttLane, exc: grpc.aio.AioRpcError) -> None:
        if lane is not self.stt:
            return
        log.warning("STT %s failed: %s", lane.target, exc.details())
        self._stt_fallbacks.failed(lane.target, exc)
        rest = [t for t in self.stt_targets if t != lane.target]
        self.stt = None
        await self._open_stt(rest, replay=True)
        if self.closing:
            await self.stt.done_writing()

    async def _on_stt_end(self, lane: SttLane) -> None:
        if lane is self.stt:
            self.stt_ended = True
            if self.closing and self.user.final_text:
                self._cancel_timer("eot")
                await self._commit_user_turn()

    async def _on_stt(self, lane: SttLane, response) -> None:
        kind = response.WhichOneof("event")
        if kind == "usage":
            self.report_usage(0, "stt", response.usage)
        if lane is not self.stt:
            return
        log.debug("stt %s at %.0f ms of audio: %s", kind, self.clock.ms, str(getattr(response, kind)).replace("\n", " "))
        if kind == "speech_started":
            self._cancel_timer("eot")  # the user goes on
            self.user.speech_started()
            if self.reply is not None and not self.reply.stopped and self.spec.interruption_enabled:
                self.barge.start(int(response.speech_started.time_ms + self._stt_offset_ms))
        elif kind == "interim" and response.interim.text.strip():
            self.user.interim_result(response.interim.text)
            self._emit(user_transcript=A.UserTranscript(turn_id=self.next_turn, text=self.user.text))
            await self._heard(response.interim.text)
        elif kind == "final":
            text = response.final.text.strip()
            self.timing.final = time.monotonic()
            self.user.final_result(text, int(response.final.end_ms + self._stt_offset_ms))
            if text:
                self._emit(user_transcript=A.UserTranscript(turn_id=self.next_turn, text=text, final=True))
                await self._heard(text)
        elif kind == "speech_ended":
            end_ms = response.speech_ended.time_ms + self._stt_offset_ms
            self.user.speech_ended(int(end_ms))
            self.barge.end()
            if self._resume_due and self.suspended is not None and not self.barge.heard_words:
                await self._resume()  # the utterance ended without words: it was noise
            self._replay = []
            if self.user.final_text:
                self.timing.end_of_speech = self.clock.wall_at(end_ms)
                wait = endpoint_wait_ms(self.user.final_text, self.clock.ms - end_ms,
                                        self.spec.min_delay_ms, self.spec.max_delay_ms)
                if wait <= 0 or self.closing:
                    await self._commit_user_turn()
                else:
                    self._timer("eot", wait)

    async def _heard(self, text: str) -> None:
        """The STT heard words: a pending barge-in is real."""
        if self.barge.words(text) and self.suspended is not None:
            await self._confirm_interruption()

    # -- turns and replies -----------------------------------------------------------------------

    async def _commit_user_turn(self) -> None:
        text = self.user.final_text
        if not text:
            return
        self._cancel_timer("eot")
        timing, self.timing = self.timing, TurnTiming(stt_model=self.timing.stt_model)
        timing.decided = time.monotonic()
        timing.stt_fallbacks, self._stt_fallbacks = self._stt_fallbacks.entries, FallbackLog()
        self.user = UserTurn()
        await self._settle()
        turn = self.next_turn
        self.next_turn += 1
        self._timings[turn] = timing
        self.history.append(llm_pb2.ChatMessage(role="user", content=text))
        log.info("turn %d: user said %r", turn, text)
        self._start_reply(Reply(self, turn))

    def _start_reply(self, reply: Reply, *, add_to_history: bool = True, prefix: str = "") -> None:
        reply.add_to_history, reply.prefix = add_to_history, prefix
        self.reply = reply
        self.barge.reset()
        self._state(A.AGENT_STATE_THINKING, reply.turn_id)

        async def run() -> None:
            await reply.run()
            self.events.put_nowait(("reply_done", reply))

        self._spawn(run(), f"reply-{reply.turn_id}")

    async def _on_reply_done(self, reply: Reply) -> None:
        if reply is self.reply and not reply.stopped:
            self._finish_reply(reply, len(reply.text), interrupted=False)

    async def _settle(self) -> None:
        """Before a new turn: stop the agent if it talks, and close a barged-in reply."""
        if self.reply is not None and not self.reply.stopped:
            await self._interrupt(confirmed=True)
        if self.suspended is not None:
            await self._confirm_interruption()

    async def _interrupt(self, *, confirmed: bool) -> None:
        reply = self.reply
        if reply is None or reply.stopped:
            if confirmed and self.suspended is not None:
                await self._confirm_interruption()
            return
        chars = reply.playout.spoken_chars(reply.playout.played_samples(time.monotonic()))
        await reply.stop()
        self.suspended = (reply, chars)
        self._state(A.AGENT_STATE_LISTENING, reply.turn_id)
        if confirmed:
            await self._confirm_interruption()
        else:
            self._timer("resume", self.spec.false_interruption_ms)

    async def _confirm_interruption(self) -> None:
        reply, chars = self.suspended
        self.suspended, self._resume_due = None, False
        self._cancel_timer("resume")
        self._finish_reply(reply, chars, interrupted=True)

    async def _resume(self) -> None:
        """The barge-in was noise: speak the rest of the reply."""
        reply, chars = self.suspended
        self.suspended, self._resume_due = None, False
        rest = reply.text[chars:].strip()
        if not rest:
            self._finish_reply(reply, chars, interrupted=False)
            return
        log.info("turn %d: false interruption, resuming", reply.turn_id)
        self._lane_unsynced(reply)
        again = Reply(self, reply.turn_id, say=rest)
        again.llm_model, again.fallbacks = reply.llm_model, reply.fallbacks
        self._start_reply(again, add_to_history=reply.add_to_history,
                          prefix=(reply.prefix + " " + reply.text[reply.history_start:chars]).strip())

    def _lane_unsynced(self, reply: Reply) -> None:
        lane = self._llm_lanes.get(reply.lane_target) if reply.lane_target else None
        if lane is not None:
            lane.synced = None

    def _finish_reply(self, reply: Reply, chars: int, *, interrupted: bool) -> None:
        if self.reply is reply:
            self.reply = None
        kept = (reply.prefix + " " + reply.text[reply.history_start:chars]).strip()
        if reply.add_to_history and kept:
            self.history.append(llm_pb2.ChatMessage(role="assistant", content=kept))
        if reply.lane_target is not None:
            complete = reply.generation_done and chars >= len(reply.text) and not reply.prefix
            lane = self._llm_lanes.get(reply.lane_target)
            if lane is not None and lane.synced is not None and complete:
                lane.synced = len(self.history)
            else:
                self._lane_unsynced(reply)
        self._metrics(reply)
        if reply.error is not None:
            log.warning("turn %d failed: %s", reply.turn_id, reply.error)
            self._error(reply.turn_id, reply.error)
        self._emit(turn_done=A.AgentTurnDone(turn_id=reply.turn_id, text=kept, interrupted=interrupted))
        if self.reply is None:
            self._state(A.AGENT_STATE_LISTENING, reply.turn_id)

    def _metrics(self, reply: Reply) -> None:
        timing = self._timings.pop(reply.turn_id, TurnTiming())
        t = reply.times
        eos = timing.end_of_speech
        self._emit(metrics=A.TurnMetrics(
            turn_id=reply.turn_id,
            end_of_utterance_delay_ms=_ms(eos, timing.decided),
            stt_final_latency_ms=_ms(eos, timing.final),
            llm_ttft_ms=_ms(t.llm_request, t.llm_first),
            tts_ttfb_ms=_ms(t.tts_first_text, t.first_audio),
            voice_to_voice_ms=_ms(eos, t.first_audio),
            stt_model=timing.stt_model,
            llm_model=reply.llm_model,
            tts_model=reply.tts_model,
            fallbacks=[*timing.stt_fallbacks, *reply.fallbacks.entries],
        ))

    # -- what replies use ----------------------------------------------------------------------

    async def llm_lane(self, target: Target) -> LlmLane:
        lane = self._llm_lanes.get(target)
        if lane is None or lane.call.done():
            lane = await LlmLane.open(self.clients, target, self.metadata, max_tokens=self.max_tokens)
            lane.on_done = lambda generation, done: self.report_usage(
                self._generations.pop(generation, 0), "llm", done.usage)
            self._llm_lanes[target] = lane
        return lane

    async def drop_llm_lane(self, target: Target) -> None:
        lane = self._llm_lanes.pop(target, None)
        if lane is not None:
            await lane.close()
        if self.llm_current == target:
            self.llm_current = None

    def pending_messages(self, lane: LlmLane) -> tuple[list[llm_pb2.ChatMessage], bool]:
        """What ``lane``'s server lacks of the history, and whether it replaces the server's."""
        if lane.synced is None or lane.synced > len(self.history):
            return list(self.history), True
        return self.history[lane.synced:], False

    def next_generation_id(self, turn_id: int) -> str:
        generation = f"{self.id}-{turn_id}-{len(self._generations)}-{time.monotonic_ns() % 10**6}"
        self._generations[generation] = turn_id
        return generation

    def llm_tools(self) -> list[llm_pb2.Tool]:
        return [llm_pb2.Tool(name=t.name, description=t.description, parameters_json=t.parameters_json)
                for t in self.spec.tools]

    def expect_tool_result(self, call_id: str) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._tools[call_id] = future
        return future

    def report_usage(self, turn_id: int, service: str, usage) -> None:
        self._emit(usage=A.UsageReport(turn_id=turn_id, service=service, usage=usage))

    def agent_speaking(self, reply: Reply) -> None:
        if reply is self.reply and not reply.stopped:
            self._state(A.AGENT_STATE_SPEAKING, reply.turn_id)
