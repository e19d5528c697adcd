"""One conversation: the core of a Session stream, run as a single actor.

Everything that changes the session's state happens in ``_main``, one event
at a time: client messages, STT and realtime events, timers and finished
replies are put on one queue as values (``inbox.py``) and handled in one
``match``. The core owns the stream, the timers, the tasks, the chat and the
models; how the user is heard and answered is its mode's (``mode.py``): the
pipeline (``pipeline.py``) or a realtime model (``realtime.py``), swapped on
UpdateModels. Every event to the client is made by ``self.emit``
(``events.Emitter``). Replies (``reply.py``) run as tasks beside it and reach
back only through the ``ReplyHost`` members at the end of this class.
"""

from __future__ import annotations

import asyncio
import logging

from voicemesh.errors import InvalidInput, VoiceMeshError
from voicemesh.orchestrator import config as session_config
from voicemesh.orchestrator.avatar import AvatarLane, avatar_spec
from voicemesh.orchestrator.clients import MeshClients, call_metadata
from voicemesh.orchestrator.conversation import Conversation
from voicemesh.orchestrator.events import Emitter, TurnTiming
from voicemesh.orchestrator.inbox import (AvatarEnded, ClientEnded, ClientMessage, Draining, Event, RealtimeEnded,
                                          RealtimeEvent, RealtimePlayed, RealtimeToolResults, ReplyDone, SttEnded,
                                          SttEvent, SttFailed, SttLost, TimerFired, TurnVerdict, VoiceHeard)
from voicemesh.orchestrator.mode import Mode
from voicemesh.orchestrator.outbox import AudioClock, Outbox
from voicemesh.orchestrator.pipeline import PipelineMode
from voicemesh.orchestrator.realtime import RealtimeMode
from voicemesh.orchestrator.reply import Reply
from voicemesh.runtime.auth import check_quota
from voicemesh.runtime.intake import AudioIntake
from voicemesh.runtime.streams import reject_second_config
from voicemesh.speech.turn import turn_detector
from voicemesh.v1 import agent_pb2

log = logging.getLogger(__name__)

A = agent_pb2
MAX_CHUNK_S = 5.0  # longest audio message accepted from a client


class Session:
    """One conversation over the mesh."""

    def __init__(self, spec: session_config.SessionSpec, clients: MeshClients, *, session_id: str,
                 authorization: str | None = None, max_tokens: int = 0, local_vad: bool = False,
                 turn_model=None, turn_policy: str | None = None, preemptive: bool = False,
                 speculative: bool = False, warm_tts: bool = False):
        self.spec, self.clients, self.id = spec, clients, session_id
        self.preemptive = preemptive  # generate a reply ahead of the turn's end
        self.speculative = speculative and preemptive  # ... from an interim already, before the final decode
        self._tasks: set[asyncio.Task] = set()  # everything the session started; cancelled at its end
        self.warm_tts = warm_tts  # open each reply's TTS stream ahead of it (orchestrator/warm.py)
        self.authorization = authorization
        self.metadata = call_metadata(authorization, session_id)
        self.outbox = Outbox()
        self.emit = Emitter(self.outbox)
        self.events: asyncio.Queue = asyncio.Queue()
        self.clock = AudioClock(spec.input_rate)
        self.intake = AudioIntake(spec.input_rate)  # client audio beyond 2x real time is dropped
        self.stt_targets = clients.targets("stt", spec.stt)
        self.tts_targets = clients.targets("tts", spec.tts)
        self.chat = Conversation(clients, self.metadata, instructions=spec.instructions,
                                 targets=clients.targets("llm", spec.llm), tools=spec.tools,
                                 tool_choice=spec.tool_choice, max_tokens=max_tokens,
                                 on_usage=lambda turn, usage: self.emit.usage(turn, "llm", usage))
        self.timing = TurnTiming()  # the user's side of the turn in progress
        self.timings: dict[int, TurnTiming] = {}  # of turns being answered
        self.next_turn = 1
        self.closing = False
        self._timers: dict[str, tuple[asyncio.TimerHandle, object]] = {}
        self._tools: dict[str, asyncio.Future] = {}
        # The end-of-turn policy (by default the Smart Turn model's when one is given, else the transcript's).
        turns = turn_detector(turn_policy or ("smart-turn" if turn_model is not None else "transcript"),
                              min_delay_ms=spec.min_delay_ms, max_delay_ms=spec.max_delay_ms, model=turn_model)
        self.pipeline = PipelineMode(self, turns, local_vad=local_vad)
        self.realtime = RealtimeMode(self)
        self.mode: Mode = self.pipeline
        self.avatar = AvatarLane(self)  # the agent's face (avatar.py), fed through self.emit

    # What tests and logs look at: the pipeline's state.
    listener = property(lambda self: self.pipeline.listener)
    user = property(lambda self: self.pipeline.user)
    recent = property(lambda self: self.pipeline.recent)
    verdict = property(lambda self: self.pipeline.verdict)
    preemption = property(lambda self: self.pipeline.replies.preemption)

    # -- the stream --------------------------------------------------------------------------

    async def run(self, requests):
        """SessionResponse messages until the conversation ends; cancels everything it started."""
        try:
            self.spawn(self._read_client(requests), "client")
            if self.spec.realtime:
                self.realtime.enter(await self.realtime.open(self.clients.targets("realtime", self.spec.realtime)))
                self.mode = self.realtime
            else:
                await self.pipeline.enter()
            self.emit.started(self.id)
            self.avatar.open(self.spec.avatar)
            self.emit.state(A.AGENT_STATE_LISTENING, 0)
            self.spawn(self._main(), "main")
            while (message := await self.outbox.get()) is not None:
                yield message
        finally:
            await self._shutdown()

    def spawn(self, coro, name: str) -> asyncio.Task:
        """Start a task the session owns (cancelled and awaited at its end)."""
        task = asyncio.create_task(coro, name=f"session-{self.id}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _read_client(self, requests) -> None:
        try:
            async for request in requests:
                if request.WhichOneof("request") == "audio" and not self.intake.admit(len(request.audio) // 2):
                    continue  # faster than 2x real time: dropped and counted, so no buffer grows with it
                self.events.put_nowait(ClientMessage(request))
            self.events.put_nowait(ClientEnded())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the client's stream broke: end the session with it
            self.outbox.end(exc)

    async def _main(self) -> None:
        try:
            while not (self.closing and not self.mode.busy()):
                await self._handle(await self.events.get())
            await self.avatar.finish()  # the frames of the last audio
            self.outbox.end()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.outbox.end(exc)

    async def _handle(self, event: Event) -> None:
        pipeline, realtime = self.pipeline, self.realtime
        match event:
            case ClientMessage(request) if self.closing and request.WhichOneof("request") == "audio":
                pass  # draining: the user's audio from now on is not heard (the STT stream is half-closed)
            case ClientMessage(request):
                await self._client(request)
            case ClientEnded():
                self.closing = True
                self.mode.end_input()
            case Draining(seconds_left):
                # The turn being spoken finishes; what the user said so far is answered; then a clean end.
                self.emit.draining(seconds_left)
                self.closing = True
                self.mode.end_input()
            case TimerFired(name, token) if self._timer_due(name, token):
                if name == "eot":
                    await pipeline.commit_turn()
                elif name == "stt_stall":
                    await pipeline.stt_stalled()
                elif name == "resume":
                    await pipeline.replies.resume_timeout()
            case TimerFired():
                pass  # cancelled or replaced after it fired
            case VoiceHeard(epoch, start_ms):
                await pipeline.on_voice(epoch, start_ms)
            case SttEvent(lane, response):
                if response.WhichOneof("event") == "speech_started":
                    pipeline.replies.warm_up()  # the reply's TTS stream opens while the user speaks
                await pipeline.on_stt(lane, response)
            case SttEnded(lane):
                await pipeline.on_stt_end(lane)
            case SttFailed(lane, error):
                await pipeline.on_stt_error(lane, error)
            case SttLost(error):
                self.emit.error(0, error)  # the session goes on: text turns work, and the STT may come back
            case TurnVerdict(check, end_ms, probability):
                await pipeline.on_verdict(check, end_ms, probability)
            case ReplyDone(reply):
                await pipeline.replies.done(reply)
            case RealtimeEvent(lane, response):
                await realtime.on_event(lane, response)
            case RealtimeEnded(lane, error):
                await realtime.on_end(lane, error)
            case RealtimePlayed(turn):
                await realtime.on_played(turn)
            case RealtimeToolResults(lane, turn, calls, outputs):
                await realtime.on_tool_results(lane, turn, calls, outputs)
            case AvatarEnded(stream, error):
                self.avatar.on_ended(stream, error)

    async def _shutdown(self) -> None:
        for handle, _token in self._timers.values():
            handle.cancel()
        for future in self._tools.values():
            future.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.pipeline.replies.warm.close()
        self.pipeline.cancel()
        self.realtime.cancel()
        self.avatar.cancel()
        await self.chat.close()

    # -- timers ------------------------------------------------------------------------------

    def timer(self, name: str, delay_ms: float) -> None:
        """Post a TimerFired for ``name`` after ``delay_ms`` (replacing a timer of that name)."""
        self.cancel_timer(name)
        token = object()
        handle = asyncio.get_running_loop().call_later(delay_ms / 1000, self.events.put_nowait,
                                                       TimerFired(name, token))
        self._timers[name] = (handle, token)

    def cancel_timer(self, name: str) -> None:
        entry = self._timers.pop(name, None)
        if entry is not None:
            entry[0].cancel()

    def has_timer(self, name: str) -> bool:
        return name in self._timers

    def _timer_due(self, name: str, token: object) -> bool:
        entry = self._timers.get(name)
        if entry is None or entry[1] is not token:
            return False
        del self._timers[name]
        return True

    # -- client messages -----------------------------------------------------------------------

    async def _client(self, request: A.SessionRequest) -> None:
        kind = request.WhichOneof("request")
        reject_second_config(kind)
        if kind == "audio":
            await self.receive_audio(request.audio)
        elif kind == "text":
            if not request.text.strip():
                raise InvalidInput("text message is empty")
            await self.mode.text(request.text.strip())
        elif kind == "update_models":
            try:
                await self._update_models(request.update_models)
            except VoiceMeshError as exc:  # a bad update leaves the session on its models
                self.emit.error(0, exc)
        elif kind == "interrupt":
            await self.mode.interrupt()
        elif kind == "say":
            await self.mode.say(request.say.text, request.say.add_to_history)
        elif kind == "tool_result":
            future = self._tools.pop(request.tool_result.call_id, None)
            if future is None or future.done():
                self.emit.error(0, InvalidInput(f"tool_result for unknown call id {request.tool_result.call_id!r}"))
            else:
                future.set_result(request.tool_result.output)

    async def receive_audio(self, pcm: bytes) -> None:
        """Every byte of the client's audio enters the session here (checked, counted, then to the mode)."""
        if len(pcm) % 2:
            raise InvalidInput("audio must be PCM s16le: an even number of bytes")
        if len(pcm) > MAX_CHUNK_S * self.spec.input_rate * 2:
            raise InvalidInput(f"audio message longer than {MAX_CHUNK_S:.0f} s; send chunks of 10-100 ms")
        self.clock.received(len(pcm) // 2)
        await self.mode.audio(pcm)

    async def _update_models(self, update: A.UpdateModels) -> None:
        """New models. Naming ``realtime`` moves the session onto that model; naming stt, llm or tts while
        on a realtime model moves it back to the pipeline. The history is kept either way."""
        mesh = self.clients.mesh
        realtime = session_config.candidates(update.realtime, "realtime", mesh) if update.realtime.candidates else None
        stt = session_config.candidates(update.stt, "stt", mesh) if update.stt.candidates else None
        llm = session_config.candidates(update.llm, "llm", mesh) if update.llm.candidates else None
        tts = session_config.candidates(update.tts, "tts", mesh, speech=True) if update.tts.candidates else None
        avatar = avatar_spec(update.avatar, mesh) if update.HasField("avatar") else self.spec.avatar
        if realtime is not None and (stt or llm or tts):
            raise InvalidInput("UpdateModels: name realtime, or stt, llm and tts, not both")
        on_realtime = self.mode is self.realtime
        if on_realtime and (stt or llm or tts):
            missing = [m for m, new in (("stt", stt), ("llm", llm), ("tts", tts)) if not new and not getattr(self.spec, m)]
            if missing:
                raise InvalidInput(f"UpdateModels: to leave the realtime model name {', '.join(missing)} too "
                                   "(the session has none yet)")
        if update.instructions:
            self.chat.set_instructions(update.instructions)
            if realtime is None:  # a new realtime stream opens with them
                await self.mode.instructions(update.instructions)
        if realtime is not None:
            await self._use_realtime(realtime)
        if update.HasField("avatar"):
            self.spec.avatar = avatar
            self.avatar.switch(avatar)
        if tts is not None:
            self.spec.tts, self.tts_targets = tts, self.clients.targets("tts", tts)
        if llm is not None:
            self.spec.llm = llm
            reply = self.pipeline.replies.reply
            await self.chat.switch(self.clients.targets("llm", llm), keep=reply and reply.lane_target)
        if stt is not None:
            self.spec.stt, self.stt_targets = stt, self.clients.targets("stt", stt)
            if not on_realtime:
                await self.pipeline.enter()
        if on_realtime and (stt or llm or tts):
            await self.pipeline.enter()  # back to STT, LLM and TTS
            await self.realtime.leave()
            self.mode = self.pipeline
            self.chat.unsync()  # the LLM streams get the whole history on their next turn
        if tts is not None or realtime is not None:
            self.pipeline.replies.warm.close()  # opened for the old voice (the user's next words open another)
        log.info("models updated: realtime=%s stt=%s llm=%s tts=%s", realtime and realtime[0].descriptor,
                 stt and stt[0].descriptor, llm and llm[0].descriptor, tts and tts[0].descriptor)

    async def _use_realtime(self, candidates) -> None:
        """Go on with a realtime model (from the pipeline, or from another realtime model)."""
        targets = self.clients.targets("realtime", candidates)
        if self.mode is self.pipeline:
            await self.pipeline.leave()
        lane = await self.realtime.open(targets)  # the session stays as it is when none answers
        if self.mode is self.pipeline:
            await self.pipeline.stop_listening()
        else:
            await self.realtime.leave()
        self.spec.realtime = candidates
        self.realtime.enter(lane)
        self.mode = self.realtime

    # -- what modes and replies use (the ``ReplyHost``) ------------------------------------------

    async def admitted(self, turn: int) -> bool:
        """The caller's key may start this turn (revoked, expired or out of quota: an error event, no turn)."""
        try:
            await check_quota()
        except VoiceMeshError as exc:
            log.info("turn %d refused: %s", turn, exc.message)
            self.emit.error(turn, exc)
            return False
        return True

    def expect_tool_result(self, call_id: str) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._tools[call_id] = future
        return future

    def turn_metadata(self, turn_id: int) -> tuple[tuple[str, str], ...]:
        """Metadata of a call made for one turn (a reply's TTS stream)."""
        return call_metadata(self.authorization, self.id, turn_id)

    async def warm_voice(self, turn_id: int, target):
        """The TTS stream opened ahead for this turn on ``target``, if one is ready (else None)."""
        return await self.pipeline.replies.warm.take(turn_id, target)

    def agent_speaking(self, reply: Reply) -> None:
        self.pipeline.replies.audio_started(reply)
