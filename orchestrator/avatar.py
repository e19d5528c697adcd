"""The session's avatar: one ``AvatarService.Render`` stream that turns the agent's audio into AgentVideo frames.

The lane is the session emitter's ``tap``: it is fed the agent's audio when
each chunk goes to the client (not when it is made), so the avatar shows
exactly what the client heard, barge-in truncation included, on one
agent-audio timeline that counts every AgentAudio sample the session sent.
Pipeline replies and realtime turns reach it the same way, through
``Emitter.agent_audio``, ``drop_audio`` (barge-in: ``Clear`` at once) and
``turn_done`` (``ReplyEnd`` once the turn's last audio went out).

Frames go straight to the outbox from the stream's reader task, each with
the turn whose audio it shows and that audio's position on the session's
timeline. A failed stream is posted to the session as ``AvatarEnded``; the
session then emits AvatarStopped and goes on with audio only. At the end of
the session the stream is half-closed once all audio went out, and the
session waits for the last frames before it ends its own stream.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import logging
from dataclasses import dataclass, field

import grpc

from voicemesh.descriptors import parse
from voicemesh.errors import InvalidInput
from voicemesh.mesh import MeshConfig
from voicemesh.orchestrator.clients import backend_options
from voicemesh.orchestrator.fallback import Candidate, Target
from voicemesh.v1 import agent_pb2, avatar_pb2, avatar_pb2_grpc

log = logging.getLogger(__name__)

V = avatar_pb2
DEFAULT_SIZE = 512
DEFAULT_FPS = 25
DEFAULT_ENCODING = "jpeg"  # a 512x512 frame is ~20 kB, raw I420 ~390 kB: 25 of those a second is a lot to stream
MIN_SIZE, MAX_SIZE = 16, 2048
MAX_FPS = 60
FINISH_GRACE_S = 5.0  # at the session's end: the wait for the last frames beyond the audio still to show


@dataclass(frozen=True)
class AvatarSpec:
    """A validated AvatarChoice."""

    candidate: Candidate
    width: int
    height: int
    fps: int
    encoding: str


def avatar_spec(choice: agent_pb2.AvatarChoice, mesh: MeshConfig) -> AvatarSpec | None:
    """Check an AvatarChoice (None: no avatar); the service itself judges the avatar's name and encoding."""
    if not choice.avatar:
        return None
    descriptor = parse(choice.avatar)
    mesh.addresses("avatar", descriptor.provider)  # NOT_FOUND when the mesh has no avatar service for it
    width = choice.width or DEFAULT_SIZE
    height = choice.height or width
    for name, value in (("width", width), ("height", height)):
        if not MIN_SIZE <= value <= MAX_SIZE or value % 2:
            raise InvalidInput(f"avatar.{name} must be even and {MIN_SIZE}..{MAX_SIZE} pixels "
                               f"(0 for {DEFAULT_SIZE}), got {value}")
    fps = choice.fps or DEFAULT_FPS
    if not 1 <= fps <= MAX_FPS:
        raise InvalidInput(f"avatar.fps must be 1..{MAX_FPS} (0 for {DEFAULT_FPS}), got {fps}")
    options = {"base_url": choice.backend.base_url, "api_key": choice.backend.api_key,
               "timeout_s": choice.backend.timeout_s, "extra": dict(choice.backend.extra)}
    return AvatarSpec(Candidate(str(descriptor), descriptor.provider, options), width, height, fps,
                      choice.encoding or DEFAULT_ENCODING)


@dataclass(eq=False)
class AvatarStream:
    """One Render call: requests written in order by one task, frames read by another.

    ``base`` is the session's agent-audio offset at which the stream started:
    the stream counts its own audio from 0.
    """

    spec: AvatarSpec
    call: grpc.aio.StreamStreamCall
    base: int
    rate: int
    fed: int = 0  # samples written (the stream's offset of the next chunk)
    shown: int = 0  # stream offset past the last frame that showed audio
    turns: list[tuple[int, int]] = field(default_factory=list)  # (stream offset where a turn starts, turn)
    closing: bool = False
    _requests: collections.deque = field(default_factory=collections.deque)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    def put(self, request: V.RenderRequest | None) -> None:
        """Queue a request (None: half-close after the ones before it)."""
        if not self.closing:
            self.closing = request is None
            self._requests.append(request)
            self._ready.set()

    def audio(self, turn: int, pcm: bytes) -> None:
        if self.closing:
            return
        if not self.turns or self.turns[-1][1] != turn:
            self.turns.append((self.fed, turn))
        step = self.rate * 2  # the service takes at most 1 s per chunk
        for i in range(0, len(pcm), step):
            piece = pcm[i:i + step]
            self.put(V.RenderRequest(audio=V.AvatarAudio(audio=piece, offset_samples=self.fed)))
            self.fed += len(piece) // 2

    def clear(self) -> None:
        """Barge-in: audio still queued here is not sent, and the service drops what it has not shown."""
        if self.closing:
            return
        self._requests = collections.deque(r for r in self._requests if r.WhichOneof("request") != "audio")
        self.put(V.RenderRequest(clear=V.Clear()))

    def turn_at(self, offset: int) -> int:
        i = bisect.bisect_right(self.turns, (offset, float("inf"))) - 1
        return self.turns[i][1] if i >= 0 else 0

    async def write(self) -> None:
        while True:
            while not self._requests:
                self._ready.clear()
                await self._ready.wait()
            request = self._requests.popleft()
            if request is None:
                await self.call.done_writing()
                return
            await self.call.write(request)


class AvatarLane:
    """The avatar of one session (at most one stream at a time)."""

    def __init__(self, session):
        self.session = session
        self.spec: AvatarSpec | None = None
        self.stream: AvatarStream | None = None
        self.offset = 0  # agent-audio samples sent to the client so far (the session's timeline)
        self.pending = 0  # agent-audio messages queued on the outbox, not yet sent
        self._idle = asyncio.Event()  # set while pending is 0
        self._idle.set()
        self._reader: asyncio.Task | None = None

    # -- the stream --------------------------------------------------------------------------

    def open(self, spec: AvatarSpec | None) -> None:
        """Start rendering with ``spec`` (None: no avatar); the stream's errors come later, as AvatarEnded."""
        self.spec = spec
        if spec is None:
            return
        s = self.session
        target: Target = s.clients.targets("avatar", [spec.candidate])[0]
        stub = avatar_pb2_grpc.AvatarServiceStub(s.clients.channel(target.address))
        call = stub.Render(metadata=s.metadata)
        stream = AvatarStream(spec, call, self.offset, s.spec.output_rate)
        stream.put(V.RenderRequest(config=V.RenderConfig(
            avatar=spec.candidate.descriptor, size=V.VideoSize(width=spec.width, height=spec.height), fps=spec.fps,
            encoding=spec.encoding, sample_rate_hz=s.spec.output_rate, backend=backend_options(spec.candidate))))
        self.stream = stream
        s.emit.tap = self
        s.spawn(self._write(stream), "avatar-writer")
        self._reader = s.spawn(self._read(stream), "avatar-reader")
        log.info("session %s: avatar %s at %dx%d, %d fps", s.id, spec.candidate.descriptor, spec.width,
                 spec.height, spec.fps)

    def switch(self, spec: AvatarSpec | None) -> None:
        """UpdateModels.avatar: the old stream is cancelled, a new one (if any) shows the audio from now on."""
        self._drop()
        self.open(spec)

    def _drop(self) -> None:
        stream, self.stream = self.stream, None
        if self.session.emit.tap is self:
            self.session.emit.tap = None
        if stream is not None:
            stream.closing = True
            stream.call.cancel()
        self._settle(self.pending)  # audio queued from now on is not counted: nothing waits for it

    async def _write(self, stream: AvatarStream) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await stream.write()  # a broken stream is the reader's to report

    async def _read(self, stream: AvatarStream) -> None:
        from voicemesh.orchestrator.inbox import AvatarEnded  # inbox imports the replies, which need config (us)

        emit = self.session.emit
        error = None
        try:
            async for response in stream.call:
                kind = response.WhichOneof("event")
                if kind == "frame":
                    frame = response.frame
                    if frame.audio_offset_samples >= 0:
                        stream.shown = frame.audio_offset_samples + stream.rate // stream.spec.fps
                        emit.agent_video(stream.turn_at(frame.audio_offset_samples),
                                         stream.base + frame.audio_offset_samples, frame)
                    else:
                        emit.agent_video(0, -1, frame)
                elif kind == "usage":
                    emit.usage(0, "avatar", response.usage)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED or self.stream is stream:
                error = exc
        self.session.events.put_nowait(AvatarEnded(stream, error))

    def on_ended(self, stream: AvatarStream, error: grpc.aio.AioRpcError | None) -> None:
        """The session's handling of AvatarEnded: a stream that broke (or ended early) leaves audio only."""
        if stream is not self.stream:
            return  # replaced, or ended as the session ends
        self._drop()
        code, message = (error.code().name, error.details() or "") if error else ("UNAVAILABLE", "the stream ended")
        log.warning("session %s: avatar %s stopped (%s: %s); going on with audio only", self.session.id,
                    stream.spec.candidate.descriptor, code, message)
        self.session.emit.avatar_stopped(stream.spec.candidate.descriptor, code, message)

    async def finish(self) -> None:
        """At the session's end: once all audio went out, half-close and wait for the frames that show it."""
        if self.stream is None:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), FINISH_GRACE_S)  # the client reads its stream slowly
        stream = self.stream
        if stream is None:
            return  # it broke meanwhile
        stream.put(None)
        unshown_s = max(0, stream.fed - stream.shown) / stream.rate
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._reader), unshown_s + FINISH_GRACE_S)
        self.stream = None

    def cancel(self) -> None:
        self._drop()

    # -- the emitter's tap -------------------------------------------------------------------

    def queued(self) -> None:
        """An AgentAudio message was queued on the outbox."""
        self.pending += 1
        self._idle.clear()

    def sent(self, turn: int, pcm: bytes) -> None:
        """An AgentAudio message went to the client: the avatar shows it at its place on the timeline."""
        self._settle(1)
        if self.stream is not None:
            self.stream.audio(turn, pcm)
        self.offset += len(pcm) // 2

    def clear(self, turn: int, dropped: int) -> None:
        """Barge-in on ``turn``: ``dropped`` queued messages were not sent; the avatar stops showing speech."""
        self._settle(dropped)
        if self.stream is not None:
            self.stream.clear()

    def reply_end(self, turn: int) -> None:
        """The turn's AgentTurnDone went out, after all its audio."""
        if self.stream is not None:
            self.stream.put(V.RenderRequest(reply_end=V.ReplyEnd()))

    def _settle(self, messages: int) -> None:
        self.pending = max(0, self.pending - messages)
        if not self.pending:
            self._idle.set()
