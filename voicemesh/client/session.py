"""The Python SDK: one spoken conversation with a VoiceMesh orchestrator.

::

    async with AgentSession(instructions="You are terse.") as session:
        await session.send_audio(pcm_16k)
        async for event in session:
            if event.type is EventType.AGENT_AUDIO:
                play(event.audio)

The session speaks ``AgentService.Session``: ``start`` sends the config and
waits for the server's ``SessionStarted``; the send methods write one request
each; iterating the session yields typed events (``voicemesh.client.events``)
until the server ends the stream. A failed call raises ``AgentSessionError``
with the gRPC code and message.

``address`` may list several orchestrator replicas, comma-separated: a replica that refuses the new
session because it is overloaded (RESOURCE_EXHAUSTED, reason OVERLOADED) or draining (UNAVAILABLE,
reason DRAINING) is skipped and the next one is tried; ``address`` is then the one that took it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from voicemesh import tls
from voicemesh.client.events import Event, EventType, SessionStarted, from_proto
from voicemesh.client.models import Choice, to_choice
from voicemesh.metering.keys import read_client_key
from voicemesh.runtime.status import detail_of
from voicemesh.v1 import agent_pb2, agent_pb2_grpc, llm_pb2

log = logging.getLogger(__name__)

# Refusal reasons of a new session that another replica may not share (voicemesh.runtime.load).
TRY_ANOTHER_REPLICA = frozenset({"OVERLOADED", "DRAINING"})

DEFAULT_ADDRESS = "127.0.0.1:50060"
DEFAULT_STT = "faster-whisper/tiny.en:en"
DEFAULT_LLM = "llama.cpp/smollm2-135m-instruct"
DEFAULT_TTS = "piper/en_US-joe-medium"
_END = object()  # end of the event stream


class AgentSessionError(Exception):
    """The session's call failed: ``code`` is the gRPC status code name."""

    def __init__(self, code: str, message: str, *, reason: str = "", known: Sequence[str] = ()):
        self.code, self.message, self.reason, self.known = code, message, reason, list(known)
        super().__init__(f"{code}: {message}")

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> AgentSessionError:
        code = error.code() if hasattr(error, "code") else None
        message = error.details() if hasattr(error, "details") else str(error)
        detail = detail_of(error)
        return cls(code.name if code else "UNKNOWN", message or "(no message)",
                   reason=detail.reason if detail else "", known=detail.known if detail else ())


@dataclass(frozen=True)
class TurnDetection:
    """End-of-turn settings (0 keeps the server default)."""

    min_endpointing_delay_ms: int = 0
    max_endpointing_delay_ms: int = 0


@dataclass(frozen=True)
class Interruption:
    """Barge-in settings (``None``/0 keeps the server default)."""

    enabled: bool | None = None
    min_duration_ms: int = 0
    false_interruption_timeout_ms: int = 0


@dataclass(frozen=True)
class Tool:
    """A tool the agent may call; ``parameters`` is a JSON schema."""

    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None


@dataclass(frozen=True)
class Avatar:
    """The agent's face: frames (AgentVideo events) rendered from its voice; 0 or "" keeps the server default
    (512x512, 25 fps, JPEG)."""

    descriptor: str  # "provider/avatar[:variant]", for example "local/ada"
    width: int = 0
    height: int = 0
    fps: int = 0
    encoding: str = ""  # "jpeg", "i420", "rgb24" or a codec PyAV writes

    def to_proto(self) -> agent_pb2.AvatarChoice:
        return agent_pb2.AvatarChoice(avatar=self.descriptor, width=self.width, height=self.height, fps=self.fps,
                                      encoding=self.encoding)


class AgentSession:
    """A conversation with the agent behind a VoiceMesh orchestrator."""

    def __init__(
        self,
        *,
        stt: Choice | None = DEFAULT_STT,
        llm: Choice | None = DEFAULT_LLM,
        tts: Choice | None = DEFAULT_TTS,
        realtime: Choice | None = None,
        instructions: str = "",
        address: str = DEFAULT_ADDRESS,
        api_key: str | None = None,
        input_sample_rate: int = 16000,
        output_sample_rate: int = 0,
        turn_detection: TurnDetection | None = None,
        interruption: Interruption | None = None,
        tools: Sequence[Tool] = (),
        first_result_timeout_ms: int = 0,
        credentials: grpc.ChannelCredentials | None = None,
        start_timeout_s: float = 30.0,
        avatar: str | Avatar | None = None,
    ):
        self.address = address
        self.addresses = [a.strip() for a in address.split(",") if a.strip()] or [address]
        self.session_id = ""
        self._config = self._build_config(
            stt=stt, llm=llm, tts=tts, realtime=realtime, instructions=instructions,
            input_sample_rate=input_sample_rate, output_sample_rate=output_sample_rate,
            turn_detection=turn_detection, interruption=interruption, tools=tools,
            first_result_timeout_ms=first_result_timeout_ms,
        )
        if avatar is not None:
            self._config.avatar.CopyFrom((Avatar(avatar) if isinstance(avatar, str) else avatar).to_proto())
        key = api_key if api_key is not None else read_client_key()
        self._metadata = (("authorization", f"Bearer {key}"),) if key else ()
        self._credentials = credentials
        self._start_timeout_s = start_timeout_s
        self._channel: grpc.aio.Channel | None = None
        self._call: grpc.aio.StreamStreamCall | None = None
        self._events: asyncio.Queue = asyncio.Queue()
        self._reader: asyncio.Task | None = None
        self._write_lock = asyncio.Lock()
        self._input_ended = False
        self._closing = False
        self._error: AgentSessionError | None = None

    @staticmethod
    def _build_config(*, stt, llm, tts, realtime, instructions, input_sample_rate, output_sample_rate,
                      turn_detection, interruption, tools, first_result_timeout_ms) -> agent_pb2.SessionConfig:
        config = agent_pb2.SessionConfig(
            instructions=instructions, input_sample_rate_hz=input_sample_rate,
            output_sample_rate_hz=output_sample_rate, first_result_timeout_ms=first_result_timeout_ms,
        )
        if realtime is not None:
            config.realtime.CopyFrom(to_choice(realtime))
        else:
            for name, value in (("stt", stt), ("llm", llm), ("tts", tts)):
                if value is not None:
                    getattr(config, name).CopyFrom(to_choice(value))
        if turn_detection is not None:
            config.turn_detection.CopyFrom(agent_pb2.TurnDetection(
                min_endpointing_delay_ms=turn_detection.min_endpointing_delay_ms,
                max_endpointing_delay_ms=turn_detection.max_endpointing_delay_ms))
        if interruption is not None:
            settings = agent_pb2.InterruptionSettings(
                min_duration_ms=interruption.min_duration_ms,
                false_interruption_timeout_ms=interruption.false_interruption_timeout_ms)
            if interruption.enabled is not None:
                settings.enabled = interruption.enabled
            config.interruption.CopyFrom(settings)
        for tool in tools:
            config.tools.append(llm_pb2.Tool(name=tool.name, description=tool.description,
                                             parameters_json=json.dumps(tool.parameters or {})))
        return config

    @property
    def config(self) -> agent_pb2.SessionConfig:
        """The config message ``start`` sends (a copy)."""
        copy = agent_pb2.SessionConfig()
        copy.CopyFrom(self._config)
        return copy

    # --- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> AgentSession:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> str:
        """Open the stream, send the config and wait for ``SessionStarted``; returns the session id.

        With several addresses, a replica that is overloaded or draining is skipped for the next one.
        """
        if self._call is not None:
            raise RuntimeError("the session is already started")
        for address, following in zip(self.addresses, self.addresses[1:]):
            try:
                return await self._start_at(address)
            except AgentSessionError as refused:
                if refused.reason not in TRY_ANOTHER_REPLICA:
                    raise
                log.info("%s refused the session (%s); trying %s", address, refused, following)
                self._call, self._events, self._closing, self._error = None, asyncio.Queue(), False, None
        return await self._start_at(self.addresses[-1])

    async def _start_at(self, address: str) -> str:
        self.address = address
        # TLS with the given credentials, else with VOICEMESH_TLS_* from the environment, else plaintext.
        self._channel = tls.aio_channel(self.address, credentials=self._credentials)
        stub = agent_pb2_grpc.AgentServiceStub(self._channel)
        self._call = stub.Session(metadata=self._metadata, wait_for_ready=False)
        self._reader = asyncio.create_task(self._read(), name="voicemesh-session-reader")
        try:
            await self._write(agent_pb2.SessionRequest(config=self._config))
            first = await asyncio.wait_for(self._events.get(), self._start_timeout_s)
        except TimeoutError:
            await self.aclose()
            raise AgentSessionError("DEADLINE_EXCEEDED",
                                    f"no SessionStarted from {self.address} within {self._start_timeout_s:g} s") from None
        except BaseException:
            await self.aclose()
            raise
        if first is _END:
            await self.aclose()
            raise self._error or AgentSessionError("UNKNOWN", "the server ended the session before it started")
        if isinstance(first, SessionStarted):
            self.session_id = first.session_id
        else:  # a server that sends no SessionStarted: keep the event for the caller
            self._events.put_nowait(first)
        return self.session_id

    async def aclose(self) -> None:
        """Cancel the call if it is still open and release the channel."""
        self._closing = True
        if self._call is not None and not self._call.done():
            self._call.cancel()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def _read(self) -> None:
        assert self._call is not None
        try:
            async for response in self._call:
                event = from_proto(response)
                if event is not None:
                    self._events.put_nowait(event)
        except grpc.aio.AioRpcError as error:
            if error.code() is not grpc.StatusCode.CANCELLED or not self._closing:
                self._error = AgentSessionError.from_rpc_error(error)
        finally:
            self._events.put_nowait(_END)

    # --- events ----------------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Event]:
        return self.events()

    async def events(self) -> AsyncIterator[Event]:
        """Events until the server ends the stream; raises ``AgentSessionError`` if it failed."""
        while True:
            event = await self._events.get()
            if event is _END:
                self._events.put_nowait(_END)  # later iterations end too
                if self._error is not None:
                    raise self._error
                return
            yield event

    async def wait_for(self, kind: EventType, timeout: float | None = None, predicate=None) -> Event:
        """The next event of ``kind`` (matching ``predicate``); other events are dropped."""
        async def find() -> Event:
            async for event in self.events():
                if event.type is kind and (predicate is None or predicate(event)):
                    return event
            raise AgentSessionError("UNKNOWN", f"the session ended before a {kind.value} event")

        return await asyncio.wait_for(find(), timeout)

    # --- input -----------------------------------------------------------------------------------

    async def _write(self, request: agent_pb2.SessionRequest) -> None:
        if self._call is None:
            raise RuntimeError("start the session first (await session.start() or use `async with`)")
        if self._input_ended:
            raise RuntimeError("end_input() was called; the session takes no more input")
        async with self._write_lock:
            try:
                await self._call.write(request)
            except grpc.aio.AioRpcError as error:
                raise AgentSessionError.from_rpc_error(error) from None
            except asyncio.InvalidStateError:  # the call already ended: report why
                raise await self._ended_error() from None

    async def _ended_error(self) -> AgentSessionError:
        assert self._call is not None
        code = await self._call.code()
        details = await self._call.details()
        return self._error or AgentSessionError(code.name, details or "the session has ended")

    async def send_audio(self, pcm: bytes) -> None:
        """User audio: PCM s16le mono at the session's input sample rate (10–100 ms chunks)."""
        await self._write(agent_pb2.SessionRequest(audio=bytes(pcm)))

    async def send_text(self, text: str) -> None:
        """A user message as text (a turn without speech)."""
        await self._write(agent_pb2.SessionRequest(text=text))

    async def update_models(self, *, stt: Choice | None = None, llm: Choice | None = None,
                            tts: Choice | None = None, realtime: Choice | None = None,
                            instructions: str = "") -> None:
        """Switch models from the next turn on; the chat history is kept. ``None`` keeps a choice."""
        update = agent_pb2.UpdateModels(instructions=instructions)
        for name, value in (("stt", stt), ("llm", llm), ("tts", tts), ("realtime", realtime)):
            if value is not None:
                getattr(update, name).CopyFrom(to_choice(value))
        await self._write(agent_pb2.SessionRequest(update_models=update))

    async def interrupt(self) -> None:
        """Stop the agent now, as a barge-in would."""
        await self._write(agent_pb2.SessionRequest(interrupt=agent_pb2.Interrupt()))

    async def say(self, text: str, *, add_to_history: bool = True) -> None:
        """Make the agent speak ``text``."""
        await self._write(agent_pb2.SessionRequest(say=agent_pb2.Say(text=text, add_to_history=add_to_history)))

    async def send_tool_result(self, call_id: str, output: Any) -> None:
        """The result of a ``ToolCall``; anything but a string is sent as JSON."""
        text = output if isinstance(output, str) else json.dumps(output)
        await self._write(agent_pb2.SessionRequest(tool_result=agent_pb2.ToolResult(call_id=call_id, output=text)))

    async def end_input(self) -> None:
        """No more input: the server finishes what is pending and ends the stream."""
        if self._call is None or self._input_ended:
            return
        async with self._write_lock:
            self._input_ended = True
            try:
                await self._call.done_writing()
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                pass  # the call already ended; iterating the events reports how
