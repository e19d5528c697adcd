"""One conversation: the state of a Session stream, run as a single actor.

Everything that changes the session's state happens in ``_main``, one event
at a time: client messages, STT events, timers and finished replies are put
on one queue. Replies (``reply.py``) run as tasks beside it and reach back
only through the few methods at the end of this class.
"""

from __future__ import annotations

import asyncio
import logging
import time


from voicemesh.errors import InvalidInput, VoiceMeshError
from voicemesh.orchestrator import config as session_config
from voicemesh.orchestrator.anticipation import Anticipation
from voicemesh.orchestrator.clients import MeshClients, call_metadata
from voicemesh.orchestrator.conversation import Conversation
from voicemesh.orchestrator.events import TurnTiming, session_error, turn_metrics
from voicemesh.orchestrator.hearing import Hearing
from voicemesh.orchestrator.listener import Listener
from voicemesh.orchestrator.outbox import AudioClock, Outbox
from voicemesh.orchestrator.realtime import Realtime
from voicemesh.orchestrator.reply import Reply
from voicemesh.orchestrator.smart_turn import RecentAudio
from voicemesh.orchestrator.turns import BargeIn, UserTurn
from voicemesh.orchestrator.voice import SpeechDetector
from voicemesh.runtime.auth import check_quota
from voicemesh.runtime.intake import AudioIntake
from voicemesh.runtime.streams import reject_second_config
from voicemesh.v1 import agent_pb2, llm_pb2

log = logging.getLogger(__name__)

A = agent_pb2
MAX_CHUNK_S = 5.0  # longest audio message accepted from a client


class Session(Anticipation, Hearing, Realtime):
    """One conversation over the mesh."""

    def __init__(self, spec: session_config.SessionSpec, clients: MeshClients, *, session_id: str,
                 authorization: str | None = None, max_tokens: int = 0, local_vad: bool = False,
                 turn_model=None, preemptive: bool = False):
        self.spec, self.clients, self.id = spec, clients, session_id
        self.turn_model, self.preemptive = turn_model, preemptive  # a SmartTurn or None; generate ahead
        self.recent = RecentAudio(spec.input_rate) if turn_model is not None else None
        self._tasks: set[asyncio.Task] = set()  # everything the session started; cancelled at its end
        self.authorization = authorization
        self.metadata = call_metadata(authorization, session_id)
        self.outbox = Outbox()
        self.events: asyncio.Queue = asyncio.Queue()
        self.clock = AudioClock(spec.input_rate)
        self.intake = AudioIntake(spec.input_rate)  # client audio beyond 2x real time is dropped
        self.stt_targets = clients.targets("stt", spec.stt)
        self.tts_targets = clients.targets("tts", spec.tts)
        self.chat = Conversation(clients, self.metadata, instructions=spec.instructions,
                                 targets=clients.targets("llm", spec.llm), tools=spec.tools,
                                 tool_choice=spec.tool_choice, max_tokens=max_tokens,
                                 on_usage=lambda turn, usage: self.report_usage(turn, "llm", usage))
        self.detector = (SpeechDetector(spec.input_rate, spec.min_interruption_ms, post=self.events.put_nowait,
                                        spawn=self._spawn) if local_vad else None)
        self.listener = Listener(clients, self.metadata, rate=spec.input_rate,
                                 min_silence_ms=self.silence_ms_for_stt(spec.min_delay_ms),
                                 post=self.events.put_nowait, spawn=self._spawn)
        self.user = UserTurn()
        self.timing = TurnTiming()
        self.barge = BargeIn(spec.min_interruption_ms)
        self.next_turn = 1
        self.reply: Reply | None = None
        self.suspended: tuple[Reply, int] | None = None  # barged-in reply waiting for words or resume
        self._timings: dict[int, TurnTiming] = {}
        self._timers: dict[str, tuple[asyncio.TimerHandle, object]] = {}
        self._tools: dict[str, asyncio.Future] = {}
        self.closing = False
        self._resume_due = False  # the false-interruption timeout passed while the user still spoke

    # -- the stream --------------------------------------------------------------------------

    async def run(self, requests):
        """SessionResponse messages until the conversation ends; cancels everything it started."""
        try:
            self._spawn(self._read_client(requests), "client")
            if self.spec.realtime:
                self.realtime = await self._open_realtime(self.clients.targets("realtime", self.spec.realtime))
            else:
                await self.listener.open(self.stt_targets, now_ms=0.0)
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
                if request.WhichOneof("request") == "audio" and not self.intake.admit(len(request.audio) // 2):
                    continue  # faster than 2x real time: dropped and counted, so no buffer grows with it
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
        heard_all = self.listener.ended if self.realtime is None else self.realtime_ended
        return (self.closing and heard_all and self.reply is None and self.suspended is None
                and self.realtime_turn is None and not self.user.final_text and "eot" not in self._timers)

    async def _shutdown(self) -> None:
        for handle, _token in self._timers.values():
            handle.cancel()
        for future in self._tools.values():
            future.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.listener.cancel()
        if self.realtime is not None:
            self.realtime.cancel()
        await self.chat.close()

    def _emit(self, **event) -> None:
        self.outbox.put(A.SessionResponse(**event))

    def _state(self, state: int, turn_id: int) -> None:
        self._emit(state=A.AgentStateChanged(state=state, turn_id=turn_id))

    def _error(self, turn_id: int, exc: BaseException) -> None:
        self._emit(error=session_error(turn_id, exc))

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
        elif name == "stt_stall":
            await self._stt_stalled()
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
            if self.realtime is not None:
                await self._realtime_interrupt()
            else:
                await self._interrupt(confirmed=True)
        elif kind == "say" and self.realtime is not None:
            self._error(0, InvalidInput("Say is not available while the session is on a realtime model"))
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
        self.listener.end()
        if self.realtime is not None:
            self.realtime.pump.end()  # the service answers what it heard, then ends

    async def _audio(self, pcm: bytes) -> None:
        if len(pcm) % 2:
            raise InvalidInput("audio must be PCM s16le: an even number of bytes")
        if len(pcm) > MAX_CHUNK_S * self.spec.input_rate * 2:
            raise InvalidInput(f"audio message longer than {MAX_CHUNK_S:.0f} s; send chunks of 10-100 ms")
        self.clock.received(len(pcm) // 2)
        if self.realtime is not None:
            self._realtime_audio(pcm)
            return
        self.listener.audio(pcm)
        if self.recent is not None:
            self.recent.feed(pcm)
        if self.detector is not None:
            self.detector.feed(pcm)
        await self._check_barge_in()

    async def _user_text(self, text: str) -> None:
        if not text.strip():
            raise InvalidInput("text message is empty")
        if self.realtime is not None:
            await self._realtime_text(text.strip())
            return
        now = time.monotonic()
        self.timing = TurnTiming(end_of_speech=now, final=now, decided=now)
        self.user = UserTurn(parts=[text.strip()])
        await self._commit_user_turn()

    async def _say(self, text: str, add_to_history: bool) -> None:
        if not text.strip():
            raise InvalidInput("Say.text is empty")
        await self._drop_preemption()
        await self._settle()
        turn = self.next_turn
        self.next_turn += 1
        if not await self._admitted(turn):
            return
        self._timings[turn] = TurnTiming(decided=time.monotonic())
        self._start_reply(Reply(self, turn, say=text), add_to_history=add_to_history)

    async def _update_models(self, update: A.UpdateModels) -> None:
        """New models. Naming ``realtime`` moves the session onto that model; naming stt, llm or tts while
        on a realtime model moves it back to the pipeline. The history is kept either way."""
        mesh = self.clients.mesh
        realtime = session_config.candidates(update.realtime, "realtime", mesh) if update.realtime.candidates else None
        stt = session_config.candidates(update.stt, "stt", mesh) if update.stt.candidates else None
        llm = session_config.candidates(update.llm, "llm", mesh) if update.llm.candidates else None
        tts = session_config.candidates(update.tts, "tts", mesh, speech=True) if update.tts.candidates else None
        if realtime is not None and (stt or llm or tts):
            raise InvalidInput("UpdateModels: name realtime, or stt, llm and tts, not both")
        on_realtime = self.realtime is not None
        if on_realtime and (stt or llm or tts):
            missing = [m for m, new in (("stt", stt), ("llm", llm), ("tts", tts)) if not new and not getattr(self.spec, m)]
            if missing:
                raise InvalidInput(f"UpdateModels: to leave the realtime model name {', '.join(missing)} too "
                                   "(the session has none yet)")
        if update.instructions:
            self.chat.set_instructions(update.instructions)
            if on_realtime and realtime is None:
                await self._realtime_instructions(update.instructions)
        if realtime is not None:
            await self._use_realtime(realtime)
        if tts is not None:
            self.spec.tts, self.tts_targets = tts, self.clients.targets("tts", tts)
        if llm is not None:
            self.spec.llm = llm
            await self.chat.switch(self.clients.targets("llm", llm), keep=self.reply and self.reply.lane_target)
        if stt is not None:
            self.spec.stt, self.stt_targets = stt, self.clients.targets("stt", stt)
            if not on_realtime:
                await self.listener.open(self.stt_targets, now_ms=self.clock.ms)
        if on_realtime and (stt or llm or tts):
            await self._use_pipeline()
        log.info("models updated: realtime=%s stt=%s llm=%s tts=%s", realtime and realtime[0].descriptor,
                 stt and stt[0].descriptor, llm and llm[0].descriptor, tts and tts[0].descriptor)

    # -- turns and replies -----------------------------------------------------------------------

    async def _commit_user_turn(self) -> None:
        text = self.user.final_text
        if not text:
            return
        self._cancel_timer("eot")
        timing, self.timing = self.timing, TurnTiming()
        timing.decided = time.monotonic()
        timing.stt_model, timing.stt_fallbacks = self.listener.model, self.listener.take_fallbacks()
        self.user = UserTurn()
        await self._settle()
        turn = self.next_turn
        self.next_turn += 1
        if not await self._admitted(turn):
            await self._drop_preemption()
            return
        self._timings[turn] = timing
        ahead = await self._take_preemption(turn, text)
        if ahead is not None:
            log.info("turn %d: user said %r (reply generated ahead)", turn, text)
            self._start_reply(ahead, running=True)
            await ahead.release()
            return
        self.chat.history.append(llm_pb2.ChatMessage(role="user", content=text))
        log.info("turn %d: user said %r", turn, text)
        self._start_reply(Reply(self, turn))

    async def _admitted(self, turn: int) -> bool:
        """The caller's key may start this turn (revoked, expired or out of quota: an error event, no turn)."""
        try:
            await check_quota()
        except VoiceMeshError as exc:
            log.info("turn %d refused: %s", turn, exc.message)
            self._error(turn, exc)
            return False
        return True

    def _start_reply(self, reply: Reply, *, add_to_history: bool = True, prefix: str = "", running: bool = False) -> None:
        reply.add_to_history, reply.prefix = add_to_history, prefix
        self.reply = reply
        self.barge.reset()
        if self.detector is not None:
            self.detector.reset(self.clock.ms)  # listen for barge-in from here
        self._state(A.AGENT_STATE_THINKING, reply.turn_id)
        if running:
            return  # a held reply: its task already runs

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
        self.chat.unsync(reply.lane_target)
        again = Reply(self, reply.turn_id, say=rest)
        again.llm_model, again.fallbacks = reply.llm_model, reply.fallbacks
        self._start_reply(again, add_to_history=reply.add_to_history,
                          prefix=(reply.prefix + " " + reply.text[reply.history_start:chars]).strip())

    def _finish_reply(self, reply: Reply, chars: int, *, interrupted: bool) -> None:
        if self.reply is reply:
            self.reply = None
        kept = (reply.prefix + " " + reply.text[reply.history_start:chars]).strip()
        complete = reply.generation_done and chars >= len(reply.text) and not reply.prefix
        if reply.add_to_history:
            self.chat.add_reply(kept, target=reply.lane_target, in_sync=complete)
        elif not complete and reply.lane_target is not None:
            self.chat.unsync(reply.lane_target)
        self._metrics(reply)
        if reply.error is not None:
            log.warning("turn %d failed: %s", reply.turn_id, reply.error)
            self._error(reply.turn_id, reply.error)
        self._emit(turn_done=A.AgentTurnDone(turn_id=reply.turn_id, text=kept, interrupted=interrupted))
        if self.reply is None:
            self._state(A.AGENT_STATE_LISTENING, reply.turn_id)

    def _metrics(self, reply: Reply) -> None:
        timing = self._timings.pop(reply.turn_id, TurnTiming())
        self._emit(metrics=turn_metrics(reply.turn_id, timing, reply.times, models=(reply.llm_model, reply.tts_model),
                                        fallbacks=reply.fallbacks.entries))

    # -- what replies use ----------------------------------------------------------------------

    def expect_tool_result(self, call_id: str) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._tools[call_id] = future
        return future

    def turn_metadata(self, turn_id: int) -> tuple[tuple[str, str], ...]:
        """Metadata of a call made for one turn (a reply's TTS stream)."""
        return call_metadata(self.authorization, self.id, turn_id)

    def report_usage(self, turn_id: int, service: str, usage) -> None:
        self._emit(usage=A.UsageReport(turn_id=turn_id, service=service, usage=usage))

    def agent_speaking(self, reply: Reply) -> None:
        if reply is self.reply and not reply.stopped:
            self._state(A.AGENT_STATE_SPEAKING, reply.turn_id)
