"""One agent reply: LLM text (or given text) into a TTS stream, its audio to the client at real time.

Two tasks share a reply. The writer streams the LLM's text deltas to the
client (AgentText) and into the TTS stream as they come; the TTS service cuts
them into segments, the first at a clause or after a few words, so the first
audio comes early.
The speaker reads the TTS stream and sends the audio paced at real time plus
a small lead, which makes "audio sent" a good measure of "audio played" for
truncation on barge-in.

A held reply (generated ahead of the turn's end, see ``replies.py``)
runs the same way, text into its TTS stream included, but sends nothing: its
text events wait in a list and its speaker waits before the first audio chunk
until ``release()``; then they go out and the audio is paced as for any reply.
Once its first audio is ready, its further text waits for the release too, so
a reply that may be dropped leaves the CPU to the user's words. A held reply
that is stopped instead has sent nothing at all.

Fallback: an LLM or voice that errors or gives no first result within the
session's timeout is replaced by the next target while the turn has sent no
audio; once audio went out, an error ends the reply with a SessionError.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from voicemesh.errors import Unavailable
from voicemesh.orchestrator.clients import MeshClients
from voicemesh.orchestrator.config import SessionSpec
from voicemesh.orchestrator.conversation import Conversation
from voicemesh.orchestrator.events import Emitter
from voicemesh.orchestrator.fallback import REFUSALS, FallbackLog, Target, failure_reason, first_of, order_from
from voicemesh.orchestrator.lanes import BROKEN, LlmLane, TtsLane
from voicemesh.orchestrator.reply_guard import ReplyGuard
from voicemesh.speech.playout import Pacer, Playout
from voicemesh.v1 import llm_pb2

log = logging.getLogger(__name__)

FAILURES = BROKEN


class AudioAlreadySent(Exception):
    """A failure after the turn's audio started: no failover, the turn ends with an error."""

    def __init__(self, cause: BaseException):
        super().__init__(str(cause))
        self.cause = cause


class ReplyHost(Protocol):
    """What a reply uses of the session that runs it (the pipeline mode)."""

    id: str  # the session's id
    spec: SessionSpec
    clients: MeshClients
    chat: Conversation
    emit: Emitter
    tts_targets: list[Target]

    def turn_metadata(self, turn_id: int) -> tuple[tuple[str, str], ...]: ...

    async def warm_voice(self, turn_id: int, target: Target) -> TtsLane | None: ...

    def expect_tool_result(self, call_id: str) -> asyncio.Future: ...

    def agent_speaking(self, reply: Reply) -> None: ...


@dataclass
class ReplyTimes:
    """Wall-clock marks of a reply (monotonic seconds)."""

    llm_request: float | None = None
    llm_first: float | None = None
    tts_first_text: float | None = None
    first_synthesized: float | None = None  # the first audio chunk came from the voice
    first_audio: float | None = None  # the first audio chunk went to the client (a held reply: at release)


@dataclass
class Reply:
    """An agent reply of turn ``turn_id``; ``say`` is given text to speak instead of generating."""

    host: ReplyHost
    turn_id: int
    say: str | None = None
    text: str = ""  # all text produced (sent to TTS)
    history_start: int = 0  # text before this offset is in the history already (with tool calls)
    tool_calls: list = field(default_factory=list)
    generation_done: bool = False  # the LLM finished normally (not cancelled)
    error: BaseException | None = None
    stopped: bool = False
    times: ReplyTimes = field(default_factory=ReplyTimes)
    llm_model: str = ""
    tts_model: str = ""
    fallbacks: FallbackLog = field(default_factory=FallbackLog)
    add_to_history: bool = True
    prefix: str = ""  # text of the reply already played before a resume
    held: bool = False  # generated ahead of the turn's end: nothing goes out before release()

    def __post_init__(self) -> None:
        self.playout = Playout(self.host.spec.output_rate)  # its speaking-rate guess is set with the voice
        self.guard = ReplyGuard(self.host.spec.reply_limits)  # caps the generated text (reply_guard.py)
        self.tts: TtsLane | None = None
        self._tts_lock = asyncio.Lock()
        self._first_text = asyncio.Event()
        self._writer_done = False
        self._writer: asyncio.Task | None = None
        self._lane: LlmLane | None = None
        self._generation: str | None = None
        self._held: list[str] = []  # text deltas produced while held
        self._released = asyncio.Event()  # set when the reply may send (at once unless held)
        if not self.held:
            self._released.set()

    @property
    def lane_target(self) -> Target | None:
        """The LLM target that generated this reply, if any."""
        return self._lane.target if self._lane is not None else None

    @property
    def held_text(self) -> str:
        """Text generated while held (not sent to the client yet)."""
        return "".join(self._held)

    @property
    def audio_sent(self) -> bool:
        return self.playout.first_sent_at is not None or self.playout.received_samples > 0

    # -- the reply as a whole -------------------------------------------------------------

    async def run(self) -> None:
        """Produce the reply; records a failure in ``error`` rather than raising it."""
        try:
            await self._open_tts(order_from(self.host.tts_targets, None), first=True)
            self._writer = asyncio.create_task(self._write(), name=f"reply-{self.turn_id}-writer")
            await self._speak()
            await self._writer
        except AudioAlreadySent as exc:
            self.error = exc.cause
            if failure_reason(exc.cause).split(":", 1)[0] not in REFUSALS:
                # The voice broke mid-reply (its process died: gRPC says UNAVAILABLE or, when the connection is cut
                # mid-frame, INTERNAL "from Core"): for the client that is one thing, a voice that went away.
                self.error = Unavailable(f"the voice {self.tts.target} broke mid-reply: {failure_reason(exc.cause)}")
        except FAILURES as exc:
            self.error = exc
        finally:
            await self._close()

    async def stop(self) -> None:
        """Stop at once (barge-in): no more audio, cancel generation and synthesis; the speaker drains."""
        if self.stopped:
            return
        self.stopped = True
        self._first_text.set()  # a speaker still waiting for text ends too
        self._released.set()  # and one waiting for release (a held reply) drops its audio
        self._held.clear()
        self.host.emit.drop_audio(self.turn_id)
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
        if self.tts is not None and not self.tts.closed_for_writing:
            with contextlib.suppress(*FAILURES):
                async with self._tts_lock:
                    await self.tts.stop()
                    await self.tts.done_writing()

    async def _close(self) -> None:
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._lane is not None and self._generation is not None and self._lane.unfinished == self._generation:
            await self._lane.cancel_generation()
        if self.tts is not None:
            self.tts.cancel()

    # -- text: LLM (with fallback) or given text -----------------------------------------

    async def _write(self) -> None:
        try:
            if self.say is not None:
                await self._text(self.say)
            else:
                await self._generate()
        finally:
            self._writer_done = True
            await self._end_text()

    async def _end_text(self) -> None:
        self._first_text.set()  # a reply without text wakes the speaker too
        if not self.stopped and self.tts is not None:
            with contextlib.suppress(*FAILURES):
                async with self._tts_lock:
                    await self.tts.end_text(self.text)

    async def release(self) -> None:
        """The turn ended with the words this held reply answers: its text and audio go out, then the rest live."""
        if not self.held or self.stopped:
            return
        self.held = False
        held, self._held = self._held, []
        for delta in held:  # before any audio: the speaker only goes on once released
            self.host.emit.agent_text(self.turn_id, delta)
        self._released.set()

    async def _text(self, delta: str) -> None:
        if not delta:
            return
        if self.held and self.times.first_synthesized is not None:
            # Its first audio is ready: the rest waits for the release (it may yet be dropped).
            await self._released.wait()
            if self.stopped:
                return
        if self.say is None:
            if self.held:
                self._held.append(delta)
            else:
                self.host.emit.agent_text(self.turn_id, delta)
        async with self._tts_lock:  # a voice failover resends self.text under the same lock
            self.text += delta
            self.playout.add_text(delta)
            if self.times.tts_first_text is None:
                self.times.tts_first_text = time.monotonic()
            with contextlib.suppress(*FAILURES):  # a dead voice is the speaker's to replace
                await self.tts.text(delta)
        self._first_text.set()

    async def _generate(self) -> None:
        host = self.host
        while True:
            events = await self._start_generation()
            calls = []
            async for response in events:
                kind = response.WhichOneof("event")
                if kind == "text_delta":
                    await self._text(self.guard.admit(response.text_delta, self.playout.seconds_per_char))
                    if self.guard.stopped:  # too long or repeating: stop generating, say what was admitted
                        await self._lane.cancel_generation()
                        return
                elif kind == "tool_call":
                    calls.append(response.tool_call)
                elif kind == "done":
                    self.generation_done = response.done.finish_reason != llm_pb2.FINISH_REASON_CANCELLED
            if not calls:
                return
            # The server appended the assistant's tool-call message; so does the session.
            host.chat.history.append(llm_pb2.ChatMessage(role="assistant", content=self.text[self.history_start:],
                                                          tool_calls=calls))
            self._lane.synced = len(host.chat.history)
            self.tool_calls.extend(calls)
            self.history_start = len(self.text)
            waits = [host.expect_tool_result(call.id) for call in calls]
            for call in calls:
                host.emit.tool_call(call)
            outputs = await asyncio.gather(*waits)
            host.chat.history.extend(llm_pb2.ChatMessage(role="tool", content=out, tool_call_id=call.id)
                                for call, out in zip(calls, outputs, strict=True))
            self.generation_done = False

    async def _start_generation(self):
        """Send a Generate to the first LLM target that answers in time; returns its event stream."""
        host = self.host
        chat = host.chat
        order = order_from(chat.targets, chat.current)
        for target in order:
            # A stall only counts while another target could serve the turn.
            timeout = host.spec.first_result_ms / 1000 if target is not order[-1] else None
            try:
                lane = await chat.lane(target)
                messages, replace = chat.pending(lane)
                generation = chat.generation_id(host.id, self.turn_id)
                self.times.llm_request = time.monotonic()
                await lane.generate(generation, messages, replace=replace, tools=chat.tools,
                                    tool_choice=None if self.tool_calls else chat.tool_choice,  # forced once
                                    turn_id=self.turn_id)
                lane.synced = len(chat.history)
                self._lane, self._generation = lane, generation
                stream = lane.events(generation)
                first = await first_of(stream, timeout, f"LLM {target}")
            except FAILURES as exc:
                log.warning("turn %d: LLM %s failed: %s", self.turn_id, target, exc)
                self.fallbacks.failed(target, exc)
                await chat.drop(target)
                continue
            except StopAsyncIteration:
                self.fallbacks.failed(target, Unavailable(f"LLM {target} ended the generation without a result"))
                await chat.drop(target)
                continue
            self.times.llm_first = self.times.llm_first or time.monotonic()
            chat.current = target
            self.llm_model = target.descriptor
            return _prepend(first, stream)
        raise self.fallbacks.exhausted(f"no LLM answered turn {self.turn_id}")

    # -- audio: TTS (with fallback) to the client ----------------------------------------

    async def _open_tts(self, order: list[Target], *, first: bool = False) -> None:
        """Open the first voice of ``order`` that accepts a stream; on failover, resend the text so far."""
        host = self.host
        for target in order:
            try:
                # The first voice's stream may be open already, for this turn (``warm.py``); never on failover.
                lane = await host.warm_voice(self.turn_id, target) if first and target is order[0] else None
                if lane is None:
                    lane = await TtsLane.open(host.clients, target, host.turn_metadata(self.turn_id),
                                              rate=host.spec.output_rate)
                if not first:
                    await lane.text(self.text)
                    if self._writer_done:
                        await lane.end_text(self.text)
            except FAILURES as exc:
                self.fallbacks.failed(target, exc)
                continue
            self.tts, self.tts_model = lane, target.descriptor
            self.playout.seconds_per_char = 0.07 / (target.candidate.speed or 1.0)
            return
        raise self.fallbacks.exhausted(f"no voice answered turn {self.turn_id}")

    async def _speak(self) -> None:
        timeout = self.host.spec.first_result_ms / 1000
        tried = [self.tts.target]
        while True:
            await self._first_text.wait()
            responses = self.tts.responses()
            try:
                untried = [t for t in self.host.tts_targets if t not in tried]
                if (not self.text and self._writer_done) or not untried:
                    first = await anext(responses)
                else:
                    first = await first_of(responses, timeout, f"voice {self.tts.target}")
            except StopAsyncIteration:
                return
            except FAILURES as exc:
                if self.stopped:
                    return
                self.fallbacks.failed(self.tts.target, exc)
                self.tts.cancel()
                async with self._tts_lock:
                    await self._open_tts([t for t in self.host.tts_targets if t not in tried])
                tried.append(self.tts.target)
                continue
            try:
                await self._play(_prepend(first, responses))
            except FAILURES as exc:
                if not self.audio_sent and not self.stopped:
                    raise
                raise AudioAlreadySent(exc) from exc
            return

    async def _play(self, responses) -> None:
        host, rate = self.host, self.host.spec.output_rate
        pacer = Pacer(rate)
        async for response in responses:
            kind = response.WhichOneof("event")
            if kind == "usage":
                self.tts.reported = True
                host.emit.usage(self.turn_id, "tts", response.usage)
            elif kind == "segment_done":
                done = response.segment_done
                self.playout.segment_done(segment_id=done.segment_id, char_start=done.char_start,
                                          char_end=done.char_end, samples=done.samples)
                async with self._tts_lock:  # the last one half-closes the stream: none writes meanwhile
                    with contextlib.suppress(*FAILURES):  # a broken stream is the next read's to report
                        await self.tts.segment_done(done.char_end)
            elif kind == "audio" and not self.stopped:
                if self.times.first_synthesized is None:
                    self.times.first_synthesized = time.monotonic()
                    await self._released.wait()  # a held reply keeps its audio until the turn ends
                    if self.stopped:
                        continue
                chunk = response.audio
                samples = len(chunk.audio) // 2
                self.playout.chunk(segment_id=chunk.segment_id, char_start=chunk.char_start,
                                   char_end=chunk.char_end, offset_samples=chunk.offset_samples, samples=samples)
                if self.times.first_audio is None:
                    self.times.first_audio = time.monotonic()
                    host.agent_speaking(self)
                await pacer.wait()
                if self.stopped:
                    continue
                pacer.advance(samples)
                host.emit.agent_audio(self.turn_id, chunk.audio, rate,
                                      on_sent=lambda n=samples: self.playout.sent(n, time.monotonic()))


async def _prepend(first, rest):
    yield first
    async for item in rest:
        yield item


__all__ = ["Reply", "ReplyHost", "ReplyTimes", "AudioAlreadySent"]
