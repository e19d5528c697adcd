"""``openai/<realtime-model>``: the OpenAI Realtime API over a WebSocket.

One session is one WebSocket to ``{base_url}/realtime?model=<model>`` with
``Authorization: Bearer <api_key>`` and ``OpenAI-Beta: realtime=v1``. Client
events become the documented JSON client events (audio as base64 pcm16 at
24 kHz, resampled from and to the session's rates) and the server's JSON
events come back as typed events. A refused connection is UNAVAILABLE, a
401 handshake UNAUTHENTICATED; the server's ``error`` events stay in band.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

from voicemesh.audio import StreamResampler, float_to_pcm, pcm_to_float
from voicemesh.backend import BackendSettings, ModelCard
from voicemesh.errors import (DeadlineExceeded, InvalidInput, ModelNotFound, PermissionDenied, ResourceExhausted,
                              Unauthenticated, Unavailable, VoiceMeshError, require_module)
from voicemesh.remote import RemoteBackend, reason
from voicemesh.services.llm.backend import Message, ToolCall
from voicemesh.services.realtime import backend as rt

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "wss://api.openai.com/v1"
API_RATE = 24000  # pcm16 of the Realtime API
MODELS = ("gpt-realtime", "gpt-4o-realtime-preview", "gpt-4o-mini-realtime-preview")
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
_END = object()
ERROR_CODES = {"invalid_request_error": "INVALID_ARGUMENT", "authentication_error": "UNAUTHENTICATED",
               "rate_limit_error": "RESOURCE_EXHAUSTED", "server_error": "UNAVAILABLE"}


def websocket_url(base_url: str, model: str) -> str:
    """The Realtime endpoint of ``base_url`` (http(s) becomes ws(s))."""
    base = base_url.rstrip("/")
    if base.startswith("http://"):
        base = "ws://" + base[len("http://"):]
    elif base.startswith("https://"):
        base = "wss://" + base[len("https://"):]
    if not base.startswith(("ws://", "wss://")):
        raise InvalidInput(f"base_url must start with ws://, wss://, http:// or https://, got {base_url!r}")
    return f"{base}/realtime?model={quote(model, safe='')}"


def session_json(options: rt.SessionOptions) -> dict[str, Any]:
    """Session options as the ``session`` object of a session.update event."""
    vad = options.turn_detection
    session: dict[str, Any] = {
        "modalities": list(options.modalities),
        "instructions": options.instructions,
        "input_audio_format": "pcm16",
        "output_audio_format": "pcm16",
        "input_audio_transcription": {"model": "whisper-1"},
        "turn_detection": None if vad is None else {
            "type": "server_vad", "threshold": vad.threshold, "prefix_padding_ms": vad.prefix_padding_ms,
            "silence_duration_ms": vad.silence_duration_ms, "create_response": vad.create_response,
            "interrupt_response": vad.interrupt_response},
        "tools": [{"type": "function", "name": t.name, "description": t.description, "parameters": dict(t.parameters)}
                  for t in options.tools],
    }
    if options.voice:
        session["voice"] = options.voice
    return session


def item_json(message: Message) -> list[dict[str, Any]]:
    """Conversation items (one message, or one per tool call) for conversation.item.create."""
    if message.role == "tool":
        return [{"type": "function_call_output", "call_id": message.tool_call_id, "output": message.content}]
    items = []
    if message.content or not message.tool_calls:
        kind = "text" if message.role == "assistant" else "input_text"
        items.append({"type": "message", "role": message.role, "content": [{"type": kind, "text": message.content}]})
    items += [{"type": "function_call", "call_id": c.id, "name": c.name, "arguments": c.arguments_json}
              for c in message.tool_calls]
    return items


def usage_of(response: dict[str, Any], audio_in: float, audio_out: float, model: str) -> rt.Usage:
    usage = response.get("usage") or {}
    details = usage.get("input_token_details") or {}
    return rt.Usage(audio_seconds_in=audio_in, audio_seconds_out=audio_out,
                    input_tokens=int(usage.get("input_tokens") or 0),
                    output_tokens=int(usage.get("output_tokens") or 0),
                    cached_tokens=int(details.get("cached_tokens") or 0), model=model)


class _Session:
    """One WebSocket session: a writer task sends client events, the caller reads server events."""

    def __init__(self, ws: Any, options: rt.SessionOptions, model: str):
        self.ws = ws
        self.options = options
        self.model = model
        self.input = StreamResampler(options.input_sample_rate_hz, API_RATE)
        self.output = StreamResampler(API_RATE, options.output_sample_rate_hz)
        self.audio_in = 0.0
        self.audio_out = 0.0
        self.active: str = ""  # response id
        self.awaiting_response = 0  # response.create sent, response.created not yet seen
        self.item_of: dict[str, str] = {}  # response id -> assistant item id
        self.idle = asyncio.Event()

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(event))

    async def write(self, events: AsyncIterator[rt.ClientEvent]) -> None:
        async for event in events:
            await self.send_event(event)

    async def send_event(self, event: rt.ClientEvent) -> None:
        if isinstance(event, rt.AudioAppend):
            self.audio_in += len(event.audio) / 2 / self.options.input_sample_rate_hz
            pcm = float_to_pcm(self.input.process(pcm_to_float(event.audio)))
            if pcm:
                await self.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()})
        elif isinstance(event, rt.AudioCommit):
            tail = float_to_pcm(self.input.process(pcm_to_float(b""), last=True))  # the end of the turn's audio
            self.input = StreamResampler(self.options.input_sample_rate_hz, API_RATE)
            if tail:
                await self.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(tail).decode()})
            await self.send({"type": "input_audio_buffer.commit"})
        elif isinstance(event, rt.AudioClear):
            self.input = StreamResampler(self.options.input_sample_rate_hz, API_RATE)  # drop what it holds too
            await self.send({"type": "input_audio_buffer.clear"})
        elif isinstance(event, rt.ItemCreate):
            for n, item in enumerate(item_json(event.message)):
                named = {"id": event.item_id, **item} if event.item_id and n == 0 else item  # one id, one item
                await self.send({"type": "conversation.item.create", "item": named})
        elif isinstance(event, rt.ResponseCreate):
            self.awaiting_response += 1
            self.idle.clear()
            response = {"modalities": list(event.modalities)} if event.modalities else {}
            await self.send({"type": "response.create", "response": response})
        elif isinstance(event, rt.ResponseCancel):
            await self.send({"type": "response.cancel"})
        elif isinstance(event, rt.ItemTruncate):
            await self.send({"type": "conversation.item.truncate", "item_id": event.item_id, "content_index": 0,
                             "audio_end_ms": event.audio_end_ms})
        elif isinstance(event, rt.ItemDelete):
            await self.send({"type": "conversation.item.delete", "item_id": event.item_id})
        elif isinstance(event, rt.SessionUpdate):
            if event.options.input_sample_rate_hz != self.options.input_sample_rate_hz:
                self.input = StreamResampler(event.options.input_sample_rate_hz, API_RATE)
            if event.options.output_sample_rate_hz != self.options.output_sample_rate_hz:
                self.output = StreamResampler(API_RATE, event.options.output_sample_rate_hz)
            self.options = event.options
            await self.send({"type": "session.update", "session": session_json(event.options)})

    def translate(self, data: dict[str, Any]) -> list[rt.ServerEvent]:
        """The typed events of one server event (none for events we do not carry)."""
        kind = data.get("type", "")
        if kind == "response.audio.delta":
            pcm = float_to_pcm(self.output.process(pcm_to_float(base64.b64decode(data.get("delta", "")))))
            self.audio_out += len(pcm) / 2 / self.options.output_sample_rate_hz
            return [rt.AudioDelta(data.get("response_id", ""), data.get("item_id", ""), pcm)] if pcm else []
        if kind in ("response.text.delta", "response.audio_transcript.delta"):
            return [rt.TextDelta(data.get("response_id", ""), data.get("item_id", ""), data.get("delta", ""),
                                 audio_transcript=kind == "response.audio_transcript.delta")]
        if kind == "input_audio_buffer.speech_started":
            return [rt.SpeechStarted(data.get("item_id", ""), int(data.get("audio_start_ms", 0)))]
        if kind == "input_audio_buffer.speech_stopped":
            return [rt.SpeechStopped(data.get("item_id", ""), int(data.get("audio_end_ms", 0)))]
        if kind == "conversation.item.input_audio_transcription.delta":
            return [rt.InputTranscription(data.get("item_id", ""), data.get("delta", ""), final=False)]
        if kind == "conversation.item.input_audio_transcription.completed":
            return [rt.InputTranscription(data.get("item_id", ""), data.get("transcript", ""), final=True)]
        if kind == "response.created":
            self.active = (data.get("response") or {}).get("id", "")
            self.awaiting_response = max(0, self.awaiting_response - 1)
            self.idle.clear()
            return []  # sent with the assistant item's id (response.output_item.added)
        if kind == "response.output_item.added":
            response_id, item = data.get("response_id", ""), data.get("item") or {}
            if response_id in self.item_of or item.get("type", "message") != "message":
                return []
            self.item_of[response_id] = item.get("id", "")
            return [rt.ResponseCreated(response_id, self.item_of[response_id])]
        if kind == "response.done":
            return self._done(data.get("response") or {})
        if kind == "conversation.item.truncated":
            return [rt.ItemTruncated(data.get("item_id", ""), int(data.get("audio_end_ms", 0)))]
        if kind == "conversation.item.deleted":
            return [rt.ItemDeleted(data.get("item_id", ""))]
        if kind == "session.updated":
            return [rt.SessionUpdated(self.options)]
        if kind == "error":
            error = data.get("error") or {}
            if error.get("code") == "response_cancel_not_active":
                # A cancel with nothing running is a no-op of RealtimeService, as on the cascade (a client's
                # cancel may cross its response's end); it must not touch the count of responses starting.
                return []
            self.awaiting_response = 0 if error.get("type") == "invalid_request_error" else self.awaiting_response
            self._check_idle()
            return [rt.ErrorEvent(code=ERROR_CODES.get(error.get("type", ""), "INTERNAL"),
                                  message=error.get("message", "") or "the realtime API reported an error",
                                  reason=str(error.get("code") or error.get("type") or "REMOTE_ERROR").upper())]
        return []

    def _done(self, response: dict[str, Any]) -> list[rt.ServerEvent]:
        response_id = response.get("id", "")
        events: list[rt.ServerEvent] = []
        tail = float_to_pcm(self.output.process(pcm_to_float(b""), last=True))  # what the resampler held back
        self.output = StreamResampler(API_RATE, self.options.output_sample_rate_hz)
        if tail and self.item_of.get(response_id):
            self.audio_out += len(tail) / 2 / self.options.output_sample_rate_hz
            events.append(rt.AudioDelta(response_id, self.item_of[response_id], tail))
        if response_id not in self.item_of:  # no message item (tool calls only, or cancelled at once)
            self.item_of[response_id] = ""
            events.append(rt.ResponseCreated(response_id, ""))
        calls = tuple(ToolCall(id=o.get("call_id", ""), name=o.get("name", ""), arguments_json=o.get("arguments", ""))
                      for o in response.get("output") or () if o.get("type") == "function_call")
        events.append(rt.ResponseDone(response_id, response.get("status", "completed"),
                                      usage_of(response, self.audio_in, self.audio_out, f"openai/{self.model}"),
                                      calls))
        self.audio_in = self.audio_out = 0.0
        self.active = ""
        self._check_idle()
        return events

    def _check_idle(self) -> None:
        if not self.active and not self.awaiting_response:
            self.idle.set()


class OpenAIRealtimeBackend(RemoteBackend, rt.RealtimeBackend):
    """A realtime model behind the OpenAI Realtime WebSocket API (or one that speaks it)."""

    provider = "openai"
    voices = VOICES
    default_base_url = DEFAULT_BASE_URL

    @classmethod
    def catalog(cls, settings: BackendSettings) -> list[ModelCard]:
        try:
            require_module("websockets", "realtime")
        except VoiceMeshError:
            return []
        return [ModelCard(descriptor=f"{cls.provider}/{model}", languages=(), sample_rates_hz=(API_RATE,),
                          voices=VOICES, capabilities={"streaming": True, "server_vad": True, "truncate": True,
                                                       "text_only_output": True, "tool_calls": True,
                                                       "interim_results": True},
                          description="OpenAI Realtime API over WebSocket (any model name is accepted)")
                for model in MODELS]

    @classmethod
    def check_model(cls, model: str, settings: BackendSettings) -> None:
        if not model:
            raise ModelNotFound("an openai realtime descriptor needs a model name, for example openai/gpt-realtime")

    async def load(self) -> None:
        require_module("websockets", "realtime")  # one WebSocket per session, no HTTP client to open
        self.url = websocket_url(self.options.base_url, self.model)

    async def _connect(self) -> Any:
        import websockets
        from websockets.exceptions import InvalidHandshake, InvalidStatus

        headers = {"OpenAI-Beta": "realtime=v1"}
        if self.options.api_key:
            headers["Authorization"] = f"Bearer {self.options.api_key}"
        try:
            return await websockets.connect(self.url, additional_headers=headers, max_size=None,
                                            open_timeout=self.options.timeout_s)
        except InvalidStatus as exc:
            status = exc.response.status_code
            body = exc.response.body.decode("utf-8", "replace")[:200] if exc.response.body else ""
            log.warning("the realtime API at %s answered HTTP %d to the handshake: %s", self.options.base_url, status,
                        body or "(no body)")  # for the operator; the client gets the status and its reason
            text = (f"the realtime API at {self.options.base_url} answered HTTP {status} ({reason(status)}) "
                    "to the handshake")
            error = {401: Unauthenticated, 403: PermissionDenied, 404: ModelNotFound, 429: ResourceExhausted}.get(
                status, Unavailable)
            raise error(text, model=f"{self.provider}/{self.model}") from None
        except TimeoutError:  # before OSError, of which it is a subclass
            raise DeadlineExceeded(f"the realtime API at {self.options.base_url} did not answer in "
                                   f"{self.options.timeout_s:g} s") from None
        except (OSError, InvalidHandshake) as exc:
            raise Unavailable(f"cannot reach the realtime API at {self.options.base_url}: {exc}") from None

    async def converse(self, options: rt.SessionOptions, events: AsyncIterator[rt.ClientEvent], *,
                       on_unsent: Callable[[rt.Usage], None] = lambda usage: None) -> AsyncIterator[rt.ServerEvent]:
        ws = await self._connect()
        session = _Session(ws, options, self.model)
        queue: asyncio.Queue = asyncio.Queue()
        tasks: list[asyncio.Task] = []
        try:
            await session.send({"type": "session.update", "session": session_json(options)})
            session.idle.set()
            tasks = [asyncio.create_task(self._read(session, queue), name="realtime-openai-reader"),
                     asyncio.create_task(self._write(session, events, queue), name="realtime-openai-writer")]
            while (item := await queue.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await ws.close()
            if session.audio_in or session.audio_out:  # audio after the last response.done (tokens unknown)
                on_unsent(rt.Usage(audio_seconds_in=session.audio_in, audio_seconds_out=session.audio_out,
                                   model=f"openai/{self.model}"))

    @staticmethod
    async def _read(session: _Session, queue: asyncio.Queue) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for message in session.ws:
                for event in session.translate(json.loads(message)):
                    queue.put_nowait(event)
            queue.put_nowait(Unavailable("the realtime API closed the session"))
        except ConnectionClosed as exc:
            queue.put_nowait(Unavailable(f"the realtime API closed the session: {exc}"))
        except ValueError as exc:
            queue.put_nowait(Unavailable(f"the realtime API sent a message that is not JSON: {exc}"))

    @staticmethod
    async def _write(session: _Session, events: AsyncIterator[rt.ClientEvent], queue: asyncio.Queue) -> None:
        """Send the client's events; once they end, wait until no response runs or is expected, then end."""
        from websockets.exceptions import ConnectionClosed

        try:
            await session.write(events)
            await session.idle.wait()
            queue.put_nowait(_END)
        except ConnectionClosed as exc:
            queue.put_nowait(Unavailable(f"the realtime API closed the session: {exc}"))
        except Exception as exc:  # bad client input or a bug: the consumer raises it
            queue.put_nowait(exc)
