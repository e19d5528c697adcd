"""``google/<live-model>``: Gemini's Live API (``BidiGenerateContent``) over a WebSocket.

One session is one WebSocket to ``{base_url}/ws/google.ai.generativelanguage.v1beta.GenerativeService.
BidiGenerateContent``, the key in ``x-goog-api-key`` (as Google's SDK sends it: no key in URLs or logs).
``setup`` goes first and ``setupComplete`` answers; audio goes out as ``realtimeInput.audio`` (PCM 16 kHz)
and comes back as ``serverContent.modelTurn`` inline data (PCM 24 kHz), resampled from and to the session.

The Live API has no response ids, cancel or truncate, so the session keeps the interface's OpenAI Realtime
semantics itself: a response starts with a turn's first model content and ends with ``turnComplete``
(completed), ``interrupted`` (cancelled) or ``toolCall`` (completed, with the calls). Without server VAD
a commit ends the user's activity (``activityStart``/``activityEnd``) and the model answers it;
``response.create`` asks (``clientContent.turnComplete``) only when no answer is due. A cancel ends the
response here at once and drops the rest of that turn. Close codes and reasons map to statuses.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from voicemesh.audio import StreamResampler, float_to_pcm, pcm_to_float
from voicemesh.backend import BackendSettings, ModelCard
from voicemesh.errors import (DeadlineExceeded, InvalidInput, ModelNotFound, PermissionDenied, ResourceExhausted,
                              Unauthenticated, Unavailable, VoiceMeshError, require_module)
from voicemesh.remote import RemoteBackend, status_error
from voicemesh.services.llm.backend import Message, ToolCall
from voicemesh.services.realtime import backend as rt

log = logging.getLogger(__name__)

PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
IN_RATE, OUT_RATE = 16000, 24000  # what the Live API takes and speaks
MODELS = ("gemini-live-2.5-flash-preview", "gemini-2.5-flash-native-audio-preview-09-2025")
VOICES = ("Puck", "Charon", "Kore", "Fenrir", "Aoede", "Leda", "Orus", "Zephyr")
_END = object()


def setup_json(model: str, options: rt.SessionOptions) -> dict[str, Any]:
    """The ``setup`` message of a session."""
    audio = "audio" in options.modalities
    generation: dict[str, Any] = {"responseModalities": ["AUDIO" if audio else "TEXT"]}
    if audio and options.voice:
        generation["speechConfig"] = {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": options.voice}}}
    vad = options.turn_detection
    detection: dict[str, Any] = {"disabled": True} if vad is None else {
        "disabled": False, "prefixPaddingMs": vad.prefix_padding_ms, "silenceDurationMs": vad.silence_duration_ms}
    setup: dict[str, Any] = {
        "model": f"models/{model}",
        "generationConfig": generation,
        "realtimeInputConfig": {
            "automaticActivityDetection": detection,
            "activityHandling": "START_OF_ACTIVITY_INTERRUPTS" if vad is None or vad.interrupt_response
            else "NO_INTERRUPTION"},
        "inputAudioTranscription": {},
    }
    if audio:
        setup["outputAudioTranscription"] = {}
    if options.instructions:
        setup["systemInstruction"] = {"parts": [{"text": options.instructions}]}
    if options.tools:
        setup["tools"] = [{"functionDeclarations": [
            {"name": t.name, "description": t.description, "parameters": dict(t.parameters)} for t in options.tools]}]
    return setup


def close_error(code: int, text: str, model: str) -> VoiceMeshError:
    """The status of a session the server closed: by its reason where that names the cause, else by code."""
    lowered = text.lower()
    message = f"the Live API closed the session ({code}: {text[:200] or 'no reason'})"
    if "api key" in lowered or "unauthenticated" in lowered:
        return Unauthenticated(message, model=model)
    if "quota" in lowered or "exhausted" in lowered or "rate limit" in lowered:
        return ResourceExhausted(message, model=model)
    if "not found" in lowered:
        return ModelNotFound(message, model=model)
    if "permission" in lowered:
        return PermissionDenied(message, model=model)
    if code in (1007, 1008):  # invalid payload, policy violation: the request is what the server refused
        return InvalidInput(message, model=model)
    return Unavailable(message, model=model)


class _Session:
    """One Live API session: the writer sends client events, the reader turns server messages into events."""

    def __init__(self, ws: Any, options: rt.SessionOptions, model: str):
        self.ws, self.options, self.model = ws, options, model
        self.descriptor = f"google/{model}"
        self.input = StreamResampler(options.input_sample_rate_hz, IN_RATE)
        self.output = StreamResampler(OUT_RATE, options.output_sample_rate_hz)
        self.ids = itertools.count(1)
        self.audio_in = self.audio_out = 0.0
        self.activity = False  # an activityStart was sent (no server VAD) and not yet ended
        self.due = 0  # answers the server owes: after activityEnd, a toolResponse or clientContent.turnComplete
        self.response, self.item = "", ""  # the running response's id and its assistant item
        self.dropping = False  # the client cancelled: drop the rest of this model turn
        self.user_item, self.heard = "", []  # the user's turn being transcribed, and what was heard of it
        self.usage: dict[str, Any] = {}
        self.tool_names: dict[str, str] = {}  # call id -> function name, for toolResponse
        self.idle = asyncio.Event()
        self.idle.set()
        self.going_away = False

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self.ids):04d}"

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    def _expect(self) -> None:
        self.due += 1
        self.idle.clear()

    async def write(self, events: AsyncIterator[rt.ClientEvent], queue: asyncio.Queue) -> None:
        async for event in events:
            for reply in await self.send_event(event):
                queue.put_nowait(reply)

    async def send_event(self, event: rt.ClientEvent) -> list[rt.ServerEvent]:
        """Send one client event; what it answers at once (the Live API has no acknowledgements)."""
        if isinstance(event, rt.AudioAppend):
            self.audio_in += len(event.audio) / 2 / self.options.input_sample_rate_hz
            if self.options.turn_detection is None and not self.activity:
                self.activity = True
                await self.send({"realtimeInput": {"activityStart": {}}})
            await self._audio(self.input.process(pcm_to_float(event.audio)))
        elif isinstance(event, rt.AudioCommit):
            await self._audio(self.input.process(pcm_to_float(b""), last=True))
            self.input = StreamResampler(self.options.input_sample_rate_hz, IN_RATE)
            if self.options.turn_detection is not None:
                await self.send({"realtimeInput": {"audioStreamEnd": True}})
            elif not self.activity:
                return [rt.ErrorEvent("INVALID_ARGUMENT", "the input audio buffer is empty",
                                      reason="INPUT_AUDIO_BUFFER_COMMIT_EMPTY")]
            else:
                self.activity = False
                self._expect()
                await self.send({"realtimeInput": {"activityEnd": {}}})
        elif isinstance(event, rt.AudioClear):
            self.input = StreamResampler(self.options.input_sample_rate_hz, IN_RATE)
        elif isinstance(event, rt.ItemCreate):
            await self._item(event.message)
        elif isinstance(event, rt.ResponseCreate):
            if not self.due and not self.response:
                self._expect()
                await self.send({"clientContent": {"turnComplete": True}})
        elif isinstance(event, rt.ResponseCancel) and self.response:
            self.dropping = True  # until the turn ends: the Live API has no cancel
            return self._finish("cancelled")
        elif isinstance(event, rt.ItemTruncate):
            # The Live API keeps the context itself and cuts an interrupted turn where it stopped speaking.
            return [rt.ItemTruncated(event.item_id, event.audio_end_ms)]
        elif isinstance(event, rt.ItemDelete):  # the Live API keeps the context itself, with no way to edit it
            return [rt.ErrorEvent("FAILED_PRECONDITION", "Gemini Live cannot delete items", "ITEM_DELETE_UNSUPPORTED")]
        elif isinstance(event, rt.SessionUpdate):
            return self._update(event.options)
        return []

    async def _audio(self, samples: Any) -> None:
        pcm = float_to_pcm(samples)
        if pcm:
            await self.send({"realtimeInput": {"audio": {"data": base64.b64encode(pcm).decode(),
                                                         "mimeType": f"audio/pcm;rate={IN_RATE}"}}})

    async def _item(self, message: Message) -> None:
        if message.role == "tool":
            try:
                output = json.loads(message.content)
            except ValueError:
                output = message.content
            self._expect()  # the model goes on once it has the result
            await self.send({"toolResponse": {"functionResponses": [{
                "id": message.tool_call_id, "name": self.tool_names.get(message.tool_call_id, ""),
                "response": output if isinstance(output, dict) else {"output": output}}]}})
            return
        parts: list[dict[str, Any]] = [{"text": message.content}] if message.content else []
        parts += [{"functionCall": {"id": c.id, "name": c.name, "args": json.loads(c.arguments_json or "{}")}}
                  for c in message.tool_calls]
        if parts:
            role = "model" if message.role == "assistant" else "user"
            await self.send({"clientContent": {"turns": [{"role": role, "parts": parts}], "turnComplete": False}})

    def _update(self, options: rt.SessionOptions) -> list[rt.ServerEvent]:
        fixed = ("instructions", "voice", "modalities", "tools", "turn_detection")
        changed = [name for name in fixed if getattr(options, name) != getattr(self.options, name)]
        if changed:
            return [rt.ErrorEvent("FAILED_PRECONDITION", f"the Live API fixes {', '.join(changed)} when the "
                                  "session is set up; open a new session to change them", reason="SETUP_FIXED")]
        if options.input_sample_rate_hz != self.options.input_sample_rate_hz:
            self.input = StreamResampler(options.input_sample_rate_hz, IN_RATE)
        if options.output_sample_rate_hz != self.options.output_sample_rate_hz:
            self.output = StreamResampler(OUT_RATE, options.output_sample_rate_hz)
        self.options = options
        return [rt.SessionUpdated(options)]

    def translate(self, message: dict[str, Any]) -> list[rt.ServerEvent]:
        """The typed events of one server message."""
        if "usageMetadata" in message:
            self.usage = message["usageMetadata"] or {}
        events: list[rt.ServerEvent] = [rt.SessionUpdated(self.options)] if "setupComplete" in message else []
        content = message.get("serverContent")
        if content:
            events += self._content(content)
        if "toolCall" in message:
            calls = tuple(ToolCall(c.get("id") or self.new_id("call"), c.get("name", ""), json.dumps(c.get("args") or {}))
                          for c in (message["toolCall"] or {}).get("functionCalls") or ())
            self.tool_names.update({c.id: c.name for c in calls})
            self.due = max(0, self.due - 1)
            events += self._begin() + self._finish("completed", calls)
        if "goAway" in message:
            self.going_away = True
            log.info("%s: the Live API will end the session in %s", self.descriptor,
                     (message["goAway"] or {}).get("timeLeft", "?"))
        return events

    def _content(self, content: dict[str, Any]) -> list[rt.ServerEvent]:
        events: list[rt.ServerEvent] = []
        heard = (content.get("inputTranscription") or {}).get("text")
        if heard:
            if not self.user_item:
                self.user_item = self.new_id("item")
                events.append(rt.SpeechStarted(self.user_item, int(self.audio_in * 1000)))
            self.heard.append(heard)
            events.append(rt.InputTranscription(self.user_item, heard, final=False))
        if content.get("interrupted"):  # the server stopped the turn: what comes next is a new one
            self.dropping = False
            return events + (self._finish("cancelled") if self.response else [])
        parts = (content.get("modelTurn") or {}).get("parts") or ()
        said = (content.get("outputTranscription") or {}).get("text")
        if (parts or said) and not self.dropping:
            events += self._begin()
            for part in parts:
                if "inlineData" in part:
                    data = base64.b64decode((part["inlineData"] or {}).get("data", ""))
                    pcm = float_to_pcm(self.output.process(pcm_to_float(data)))
                    self.audio_out += len(pcm) / 2 / self.options.output_sample_rate_hz
                    if pcm:
                        events.append(rt.AudioDelta(self.response, self.item, pcm))
                elif part.get("text"):
                    events.append(rt.TextDelta(self.response, self.item, part["text"]))
            if said:
                events.append(rt.TextDelta(self.response, self.item, said, audio_transcript=True))
        if content.get("turnComplete"):
            self.dropping = False
            events += self._finish("completed") if self.response else []
            self._check_idle()
        return events

    def _begin(self) -> list[rt.ServerEvent]:
        """The events that open a response (and close the user's turn it answers), once per response."""
        if self.response:
            return []
        events: list[rt.ServerEvent] = []
        if self.user_item:
            events += [rt.SpeechStopped(self.user_item, int(self.audio_in * 1000)),
                       rt.InputTranscription(self.user_item, "".join(self.heard), final=True)]
            self.user_item, self.heard = "", []
        self.due = max(0, self.due - 1)
        self.response, self.item = self.new_id("resp"), self.new_id("item")
        self.idle.clear()
        return [*events, rt.ResponseCreated(self.response, self.item)]

    def _finish(self, status: str, calls: tuple[ToolCall, ...] = ()) -> list[rt.ServerEvent]:
        events: list[rt.ServerEvent] = []
        tail = float_to_pcm(self.output.process(pcm_to_float(b""), last=True))
        self.output = StreamResampler(OUT_RATE, self.options.output_sample_rate_hz)
        if tail and status == "completed":
            self.audio_out += len(tail) / 2 / self.options.output_sample_rate_hz
            events.append(rt.AudioDelta(self.response, self.item, tail))
        usage = rt.Usage(audio_seconds_in=self.audio_in, audio_seconds_out=self.audio_out,
                         input_tokens=int(self.usage.get("promptTokenCount") or 0),
                         output_tokens=int(self.usage.get("responseTokenCount") or 0),
                         cached_tokens=int(self.usage.get("cachedContentTokenCount") or 0), model=self.descriptor)
        events.append(rt.ResponseDone(self.response, status, usage, calls))
        self.response = self.item = ""
        self.audio_in = self.audio_out = 0.0
        self.usage = {}
        self._check_idle()
        return events

    def _check_idle(self) -> None:
        if not self.response and not self.due:
            self.idle.set()


class GoogleRealtimeBackend(RemoteBackend, rt.RealtimeBackend):
    """A Gemini model behind the Live API's ``BidiGenerateContent`` WebSocket."""

    provider = "google"
    voices = VOICES
    default_base_url = "wss://generativelanguage.googleapis.com"
    key_env = ("GOOGLE_API_KEY", "GEMINI_API_KEY")

    @classmethod
    def catalog(cls, settings: BackendSettings) -> list[ModelCard]:
        try:
            require_module("websockets", "realtime")
        except VoiceMeshError:
            return []
        return [ModelCard(descriptor=f"google/{model}", sample_rates_hz=(IN_RATE, OUT_RATE), voices=VOICES,
                          capabilities={"streaming": True, "server_vad": True, "truncate": False,
                                        "text_only_output": True, "tool_calls": True, "interim_results": True},
                          description="Gemini Live API (BidiGenerateContent WebSocket; any model name is accepted)")
                for model in MODELS]

    @classmethod
    def check_model(cls, model: str, settings: BackendSettings) -> None:
        if not model:
            raise ModelNotFound("a google realtime descriptor needs a model, for example "
                                "google/gemini-live-2.5-flash-preview")

    async def load(self) -> None:
        require_module("websockets", "realtime")
        base = self.options.base_url.rstrip("/")
        for http, ws in (("http://", "ws://"), ("https://", "wss://")):
            base = ws + base[len(http):] if base.startswith(http) else base
        if not base.startswith(("ws://", "wss://")):
            raise InvalidInput(f"base_url must start with ws://, wss://, http:// or https://, got {base!r}")
        self.url = base + PATH

    async def _connect(self) -> Any:
        import websockets
        from websockets.exceptions import InvalidHandshake, InvalidStatus

        headers = {"x-goog-api-key": self.options.api_key} if self.options.api_key else {}
        try:
            return await websockets.connect(self.url, additional_headers=headers, max_size=None,
                                            open_timeout=self.options.timeout_s)
        except InvalidStatus as exc:
            log.warning("the Live API at %s answered HTTP %d to the handshake", self.options.base_url,
                        exc.response.status_code)
            raise status_error(exc.response.status_code, endpoint=PATH, model=f"google/{self.model}") from None
        except TimeoutError:
            raise DeadlineExceeded(f"the Live API at {self.options.base_url} did not answer in "
                                   f"{self.options.timeout_s:g} s") from None
        except (OSError, InvalidHandshake) as exc:
            raise Unavailable(f"cannot reach the Live API at {self.options.base_url}: {exc}") from None

    async def converse(self, options: rt.SessionOptions, events: AsyncIterator[rt.ClientEvent], *,
                       on_unsent: Callable[[rt.Usage], None] = lambda usage: None) -> AsyncIterator[rt.ServerEvent]:
        ws = await self._connect()
        session = _Session(ws, options, self.model)
        queue: asyncio.Queue = asyncio.Queue()
        tasks: list[asyncio.Task] = []
        try:
            await session.send({"setup": setup_json(self.model, options)})
            tasks = [asyncio.create_task(self._read(session, queue), name="realtime-google-reader"),
                     asyncio.create_task(self._write(session, events, queue), name="realtime-google-writer")]
            while (item := await queue.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await ws.close()
            if session.audio_in or session.audio_out:  # audio after the last response (tokens unknown)
                on_unsent(rt.Usage(audio_seconds_in=session.audio_in, audio_seconds_out=session.audio_out,
                                   model=session.descriptor))

    @staticmethod
    async def _read(session: _Session, queue: asyncio.Queue) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for message in session.ws:  # the server sends JSON in binary frames
                data = json.loads(message)
                if not isinstance(data, dict):
                    raise ValueError("a message that is not a JSON object")
                for event in session.translate(data):
                    queue.put_nowait(event)
            queue.put_nowait(close_error(session.ws.close_code or 1006, session.ws.close_reason or "",
                                         session.descriptor))
        except ConnectionClosed as exc:
            close = exc.rcvd
            queue.put_nowait(close_error(close.code if close else 1006,
                                         close.reason if close else "the connection dropped", session.descriptor))
        except ValueError as exc:
            log.warning("%s: the Live API sent a malformed message: %s", session.descriptor, exc)
            queue.put_nowait(Unavailable("the Live API sent a malformed message", model=session.descriptor))

    @staticmethod
    async def _write(session: _Session, events: AsyncIterator[rt.ClientEvent], queue: asyncio.Queue) -> None:
        """Send the client's events; once they end, wait until no response runs or is due, then end."""
        from websockets.exceptions import ConnectionClosed

        try:
            await session.write(events, queue)
            await session.idle.wait()
            queue.put_nowait(_END)
        except ConnectionClosed:
            pass  # the reader reports why the server closed
        except Exception as exc:  # bad client input or a bug: the consumer raises it
            queue.put_nowait(exc)
