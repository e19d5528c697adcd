"""A local server that speaks the documented OpenAI Realtime WebSocket protocol (beta event names).

A test double for the paid cloud API (no such server runs here), as strict as the documented API: it checks
the handshake (path ``/v1/realtime?model=...``, ``Authorization: Bearer``, ``OpenAI-Beta: realtime=v1``; a
wrong key gets HTTP 401) and answers as OpenAI's server does:

- ``session.created`` with OpenAI's defaults, server VAD on (threshold 0.5, 300 ms prefix padding, 500 ms
  silence, create_response and interrupt_response on); ``session.update`` replaces what it names;
- every item it adds is announced with ``conversation.item.created`` (and ``previous_item_id``), a deleted one
  with ``conversation.item.deleted``;
- input transcription events only when the session asks for ``input_audio_transcription``;
- a response runs ``response.created``, ``response.output_item.added``, ``conversation.item.created``,
  ``response.content_part.added``, the deltas, then every ``*.done`` event (audio, transcript or text,
  content part, output item) and ``response.done`` with usage; a cancelled one ends with status
  ``cancelled`` and its ``status_details``;
- errors as OpenAI's: ``response.cancel`` with no response running (``response_cancel_not_active``), a second
  ``response.create`` while one runs, a commit of under 100 ms of audio, a truncate past the audio sent, an
  unknown item;
- the VAD settings hold: ``threshold`` sets the energy detector's level (0.5 is an RMS of 0.02, 6 dB per 0.1),
  ``silence_duration_ms`` ends speech, ``prefix_padding_ms`` moves ``audio_start_ms``, ``create_response``
  and ``interrupt_response`` are obeyed, ``turn_detection: null`` turns it off.

Every reply is a fixed sentence spoken by the real piper voice (pcm16 at 24 kHz, base64) with its
transcript, or text when the modalities say so. It cannot understand speech, so its input "transcription"
says how many milliseconds of audio it received, which lets a test check the audio arrived whole at 24 kHz.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.loopback import LoopbackServer
from tests.speech import speak

RATE = 24000
REPLY = "The capital of France is Paris."
FRAME = RATE // 50  # 20 ms
DEFAULT_VAD = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500,
               "create_response": True, "interrupt_response": True}
# The energy detector's RMS at threshold 0.5. As OpenAI's "a higher threshold requires louder audio", each 0.1
# of threshold is 6 dB: 0.0 hears a whisper (RMS 0.0006), 1.0 only a shout (0.63, louder than piper's 0.31).
RMS_AT_HALF = 0.02


@dataclass
class Seen:
    """What the server received, for assertions."""

    handshakes: list[dict[str, str]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]


class FakeRealtimeServer(LoopbackServer):
    """``url`` is its base URL (what an OpenAI client takes as base_url, with ws://)."""

    def __init__(self, api_key: str = "test-key", reply: str = REPLY, delta_ms: int = 100, pace_s: float = 0.02):
        super().__init__()
        self.api_key = api_key
        self.reply = reply
        self.reply_audio = speak(reply, RATE)
        self.delta_bytes = RATE * delta_ms // 1000 * 2
        self.pace_s = pace_s
        self.seen = Seen()
        self._ids = itertools.count(1)

    @property
    def url(self) -> str:
        return f"{self.base_url}/v1"

    def check(self, ws: ServerConnection, request: Request) -> Response | None:
        headers = {k.lower(): v for k, v in request.headers.raw_items()}
        self.seen.handshakes.append({"path": request.path, **headers})
        if not request.path.startswith("/v1/realtime?model="):
            return ws.respond(404, "not found\n")
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return ws.respond(401, "Incorrect API key provided\n")
        if headers.get("openai-beta") != "realtime=v1":
            return ws.respond(400, "missing OpenAI-Beta: realtime=v1\n")
        return None

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):04d}"

    async def handle(self, ws: ServerConnection) -> None:
        session = _Connection(self, ws)
        try:
            await session.run()
        except ConnectionClosed:
            pass
        finally:
            await session.stop_response()


class _Connection:
    """One client connection: its session, buffer, conversation and running response."""

    def __init__(self, server: FakeRealtimeServer, ws: ServerConnection):
        self.server = server
        self.ws = ws
        self.session: dict[str, Any] = {
            "id": server.new_id("sess"), "object": "realtime.session", "model": "gpt-realtime",
            "modalities": ["text", "audio"], "instructions": "", "voice": "alloy", "input_audio_format": "pcm16",
            "output_audio_format": "pcm16", "input_audio_transcription": None, "turn_detection": dict(DEFAULT_VAD),
            "tools": [], "tool_choice": "auto", "temperature": 0.8, "max_response_output_tokens": "inf"}
        self.buffer = bytearray()
        self.items: dict[str, dict[str, Any]] = {}  # in conversation order
        self.response: asyncio.Task | None = None
        self.speech_item = ""
        self.quiet_frames = 0
        self.position = 0  # input samples scored by the energy detector
        self.pending = np.zeros(0, dtype=np.float32)  # samples short of a whole frame
        self.buffer_start = 0  # input sample position of buffer[0]

    async def send(self, event: dict[str, Any]) -> None:
        event.setdefault("event_id", self.server.new_id("event"))
        await self.ws.send(json.dumps(event))

    async def error(self, code: str, message: str, event: dict[str, Any], param: str | None = None) -> None:
        await self.send({"type": "error", "error": {"type": "invalid_request_error", "code": code, "message": message,
                                                    "param": param, "event_id": event.get("event_id")}})

    async def run(self) -> None:
        await self.send({"type": "session.created", "session": dict(self.session)})
        async for message in self.ws:
            event = json.loads(message)
            self.server.seen.events.append(event)
            await self.on_event(event)

    def running(self) -> bool:
        return self.response is not None and not self.response.done()

    async def add_item(self, item: dict[str, Any]) -> None:
        previous = list(self.items)[-1] if self.items else None
        self.items[item["id"]] = item
        await self.send({"type": "conversation.item.created", "previous_item_id": previous, "item": item})

    async def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "session.update":
            update = event.get("session") or {}
            if "turn_detection" in update and update["turn_detection"] is not None:
                update = {**update, "turn_detection": {**DEFAULT_VAD, **update["turn_detection"]}}
            self.session.update(update)
            await self.send({"type": "session.updated", "session": dict(self.session)})
        elif kind == "input_audio_buffer.append":
            await self.append(base64.b64decode(event["audio"]))
        elif kind == "input_audio_buffer.commit":
            ms = len(self.buffer) // 2 * 1000 / RATE
            if ms < 100:
                await self.error("input_audio_buffer_commit_empty", "Error committing input audio buffer: buffer "
                                 f"too small. Expected at least 100ms of audio, but buffer only has {ms:.2f}ms of "
                                 "audio.", event)
            else:
                await self.commit()
        elif kind == "input_audio_buffer.clear":
            self.buffer_start += len(self.buffer) // 2
            self.buffer.clear()
            await self.send({"type": "input_audio_buffer.cleared"})
        elif kind == "conversation.item.create":
            item = {"object": "realtime.item", "status": "completed", **event["item"]}
            item.setdefault("id", self.server.new_id("item"))
            await self.add_item(item)
        elif kind == "conversation.item.delete":
            if self.items.pop(event.get("item_id", ""), None) is None:
                await self.error("item_delete_invalid_item_id", f"Item with item_id not found: "
                                 f"{event.get('item_id')}", event, "item_id")
            else:
                await self.send({"type": "conversation.item.deleted", "item_id": event["item_id"]})
        elif kind == "response.create":
            if self.running():
                await self.error("conversation_already_has_active_response", "Conversation already has an active "
                                 f"response in progress: {self.response.get_name()}. Wait until the response is "
                                 "finished before creating a new one.", event)
            else:
                modalities = (event.get("response") or {}).get("modalities") or self.session["modalities"]
                self.start_response(modalities)
        elif kind == "response.cancel":
            if not self.running():
                await self.error("response_cancel_not_active", "Cancellation failed: no active response found", event)
            else:
                await self.stop_response()
        elif kind == "conversation.item.truncate":
            await self.truncate(event)
        else:
            await self.error("invalid_value", f"Invalid value: '{kind}'. Supported values are: 'session.update', "
                             "'input_audio_buffer.append', ... 'response.cancel'.", event, "type")

    async def truncate(self, event: dict[str, Any]) -> None:
        item = self.items.get(event.get("item_id", ""))
        if item is None or item.get("role") != "assistant":
            message = ("Only model output audio messages can be truncated" if item is not None
                       else f"Item with item_id not found: {event.get('item_id')}")
            await self.error("item_truncate_invalid_item_id", message, event, "item_id")
            return
        sent_ms = item.get("audio_bytes", 0) // 2 * 1000 // RATE
        if event.get("audio_end_ms", 0) > sent_ms:
            await self.error("invalid_value", f"Audio content of {sent_ms}ms is already shorter than "
                             f"{event['audio_end_ms']}ms", event, "audio_end_ms")
            return
        item["audio_end_ms"] = event["audio_end_ms"]
        await self.send({"type": "conversation.item.truncated", "item_id": item["id"], "content_index": 0,
                         "audio_end_ms": event["audio_end_ms"]})

    def start_response(self, modalities: list[str]) -> None:
        response_id = self.server.new_id("resp")
        self.response = asyncio.create_task(self.respond(response_id, modalities), name=response_id)

    async def append(self, pcm: bytes) -> None:
        self.buffer += pcm
        vad = self.session.get("turn_detection")
        if not vad:
            return
        level = RMS_AT_HALF * 10 ** ((float(vad["threshold"]) - 0.5) * 3)
        samples = np.concatenate([self.pending, np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768])
        whole = len(samples) // FRAME * FRAME
        self.pending = samples[whole:]
        for start in range(0, whole, FRAME):
            loud = float(np.sqrt(np.mean(samples[start:start + FRAME] ** 2))) > level
            self.position += FRAME
            ms = self.position * 1000 // RATE
            if loud and not self.speech_item:
                self.speech_item, self.quiet_frames = self.server.new_id("item"), 0
                await self.send({"type": "input_audio_buffer.speech_started", "item_id": self.speech_item,
                                 "audio_start_ms": max(0, ms - int(vad["prefix_padding_ms"]))})
                if vad["interrupt_response"] and self.running():
                    await self.stop_response("turn_detected")
            elif self.speech_item:
                self.quiet_frames = 0 if loud else self.quiet_frames + 1
                if self.quiet_frames * 20 >= int(vad["silence_duration_ms"]):
                    await self.send({"type": "input_audio_buffer.speech_stopped", "item_id": self.speech_item,
                                     "audio_end_ms": ms})
                    await self.commit(self.speech_item)
                    self.speech_item = ""
                    if vad["create_response"] and not self.running():
                        self.start_response(self.session["modalities"])

    async def commit(self, item_id: str = "") -> None:
        """Commit the buffer (with server VAD: up to the detector's position; the rest stays)."""
        item_id = item_id or self.server.new_id("item")
        cut = (self.position - self.buffer_start) * 2 if item_id == self.speech_item else len(self.buffer)
        ms = cut // 2 * 1000 // RATE
        del self.buffer[:cut]
        self.buffer_start += cut // 2
        previous = list(self.items)[-1] if self.items else None
        await self.send({"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": item_id})
        await self.add_item({"id": item_id, "object": "realtime.item", "type": "message", "status": "completed",
                             "role": "user", "content": [{"type": "input_audio", "transcript": None}],
                             "audio_ms": ms})
        if self.session.get("input_audio_transcription"):
            await self.send({"type": "conversation.item.input_audio_transcription.delta", "item_id": item_id,
                             "content_index": 0, "delta": f"{ms} ms"})
            await self.send({"type": "conversation.item.input_audio_transcription.completed", "item_id": item_id,
                             "content_index": 0, "transcript": f"{ms} ms of audio"})

    async def stop_response(self, reason: str = "client_cancelled") -> None:
        task, self.response = self.response, None
        if task is not None and not task.done():
            task.cancel(reason)
            await asyncio.gather(task, return_exceptions=True)

    def _wants_tool(self) -> dict[str, Any] | None:
        """The session's first tool, when the last item is a user message (not a tool's output)."""
        tools = self.session.get("tools") or []
        last = list(self.items.values())[-1] if self.items else {}
        return tools[0] if tools and last.get("role") == "user" else None

    async def respond(self, response_id: str, modalities: list[str]) -> None:
        tool = self._wants_tool()
        item_id = self.server.new_id("item")
        call_id = self.server.new_id("call") if tool is not None else ""
        if tool is not None:  # the documented function-calling flow: one function_call item
            item = {"id": item_id, "object": "realtime.item", "type": "function_call", "status": "in_progress",
                    "call_id": call_id, "name": tool["name"], "arguments": ""}
        else:
            item = {"id": item_id, "object": "realtime.item", "type": "message", "status": "in_progress",
                    "role": "assistant", "content": []}
        input_tokens = sum(len(json.dumps(i.get("content", ""))) // 4 + 1 for i in self.items.values())
        await self.send({"type": "response.created", "response": {
            "id": response_id, "object": "realtime.response", "status": "in_progress", "status_details": None,
            "output": [], "usage": None}})
        await self.send({"type": "response.output_item.added", "response_id": response_id, "output_index": 0,
                         "item": dict(item)})
        await self.add_item(item)
        status, details, output_tokens = "completed", None, 0
        where = {"response_id": response_id, "item_id": item_id, "output_index": 0}
        try:
            if tool is not None:
                item["arguments"] = json.dumps({"city": "Paris"})
                await self.send({"type": "response.function_call_arguments.delta", **where, "call_id": call_id,
                                 "delta": item["arguments"]})
                await self.send({"type": "response.function_call_arguments.done", **where, "call_id": call_id,
                                 "arguments": item["arguments"]})
                output_tokens = 2
            else:
                output_tokens = await self.speak(item, where, "audio" in modalities)
        except asyncio.CancelledError as cancel:
            status = "cancelled"
            details = {"type": "cancelled", "reason": str(cancel.args[0]) if cancel.args else "client_cancelled"}
        item["status"] = "completed" if status == "completed" else "incomplete"
        usage = {"total_tokens": input_tokens + output_tokens, "input_tokens": input_tokens,
                 "output_tokens": output_tokens, "input_token_details": {"cached_tokens": 0}}
        await asyncio.shield(self.finish(item, where, status, details, usage))

    async def speak(self, item: dict[str, Any], where: dict[str, Any], audio: bool) -> int:
        """The reply's content part and deltas; returns its output tokens."""
        part = {"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""}
        item["content"].append(part)
        at = {**where, "content_index": 0}
        await self.send({"type": "response.content_part.added", **at, "part": dict(part)})
        words = self.server.reply.split()
        if audio:
            speech = self.server.reply_audio
            await self.send({"type": "response.audio_transcript.delta", **at, "delta": self.server.reply})
            part["transcript"] = self.server.reply
            item["audio_bytes"] = 0
            for sent in range(0, len(speech), self.server.delta_bytes):
                piece = speech[sent:sent + self.server.delta_bytes]
                await self.send({"type": "response.audio.delta", **at, "delta": base64.b64encode(piece).decode()})
                item["audio_bytes"] += len(piece)
                await asyncio.sleep(self.server.pace_s)
        else:
            for n, word in enumerate(words):
                delta = word if n == 0 else " " + word
                await self.send({"type": "response.text.delta", **at, "delta": delta})
                part["text"] += delta
                await asyncio.sleep(self.server.pace_s)
        return len(words)

    async def finish(self, item: dict[str, Any], where: dict[str, Any], status: str, details, usage) -> None:
        """The ``*.done`` events, as OpenAI sends them for a finished or cancelled response."""
        for index, part in enumerate(item.get("content") or ()):
            at = {**where, "content_index": index}
            if part["type"] == "audio":
                await self.send({"type": "response.audio.done", **at})
                await self.send({"type": "response.audio_transcript.done", **at, "transcript": part["transcript"]})
            else:
                await self.send({"type": "response.text.done", **at, "text": part["text"]})
            await self.send({"type": "response.content_part.done", **at, "part": dict(part)})
        await self.send({"type": "response.output_item.done", "response_id": where["response_id"],
                         "output_index": 0, "item": dict(item)})
        await self.send({"type": "response.done", "response": {
            "id": where["response_id"], "object": "realtime.response", "status": status, "status_details": details,
            "output": [dict(item)], "usage": usage}})
