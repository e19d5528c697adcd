"""A local server that speaks the documented OpenAI Realtime WebSocket protocol.

A test double for the paid cloud API (no such server runs here): it checks
the handshake (path ``/v1/realtime?model=...``, ``Authorization: Bearer``,
``OpenAI-Beta: realtime=v1``; a wrong key gets HTTP 401), keeps a
conversation of items, detects speech by energy when ``server_vad`` is on,
and answers every response with a fixed reply spoken by the real piper voice
(pcm16 at 24 kHz, base64) with its transcript, or as text when the
modalities say so, then ``response.done`` with usage. It cannot understand
speech, so its input "transcription" says how many milliseconds of audio it
received, which lets a test check the audio arrived whole at 24 kHz.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.speech import speak

RATE = 24000
REPLY = "The capital of France is Paris."
FRAME = RATE // 50  # 20 ms


@dataclass
class Seen:
    """What the server received, for assertions."""

    handshakes: list[dict[str, str]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]


class FakeRealtimeServer:
    """Runs in its own thread and event loop; ``url`` is its base URL."""

    def __init__(self, api_key: str = "test-key", reply: str = REPLY, delta_ms: int = 100, pace_s: float = 0.02):
        self.api_key = api_key
        self.reply = reply
        self.reply_audio = speak(reply, RATE)
        self.delta_bytes = RATE * delta_ms // 1000 * 2
        self.pace_s = pace_s
        self.seen = Seen()
        self.port = 0
        self._ids = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Future | None = None
        self._thread = threading.Thread(target=self._run, name="fake-realtime", daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeRealtimeServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fake realtime server did not start")
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = self._loop.create_future()
        async with serve(self._handle, "127.0.0.1", 0, process_request=self._check, max_size=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop

    def _check(self, connection: ServerConnection, request: Any) -> Any:
        headers = {k.lower(): v for k, v in request.headers.raw_items()}
        self.seen.handshakes.append({"path": request.path, **headers})
        if not request.path.startswith("/v1/realtime?model="):
            return connection.respond(404, "not found\n")
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return connection.respond(401, "Incorrect API key provided\n")
        if headers.get("openai-beta") != "realtime=v1":
            return connection.respond(400, "missing OpenAI-Beta: realtime=v1\n")
        return None

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):04d}"

    async def _handle(self, ws: ServerConnection) -> None:
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
        self.session: dict[str, Any] = {"modalities": ["text", "audio"], "turn_detection": None}
        self.buffer = bytearray()
        self.items: dict[str, dict[str, Any]] = {}
        self.response: asyncio.Task | None = None
        self.speech_item = ""
        self.quiet_frames = 0
        self.position = 0  # input samples scored by the energy detector
        self.pending = np.zeros(0, dtype=np.float32)  # samples short of a whole frame
        self.buffer_start = 0  # input sample position of buffer[0]

    async def send(self, event: dict[str, Any]) -> None:
        event.setdefault("event_id", self.server.new_id("event"))
        await self.ws.send(json.dumps(event))

    async def error(self, code: str, message: str) -> None:
        await self.send({"type": "error", "error": {"type": "invalid_request_error", "code": code,
                                                    "message": message}})

    async def run(self) -> None:
        await self.send({"type": "session.created", "session": dict(self.session)})
        async for message in self.ws:
            event = json.loads(message)
            self.server.seen.events.append(event)
            await self.on_event(event)

    async def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "session.update":
            self.session.update(event.get("session") or {})
            await self.send({"type": "session.updated", "session": dict(self.session)})
        elif kind == "input_audio_buffer.append":
            await self.append(base64.b64decode(event["audio"]))
        elif kind == "input_audio_buffer.commit":
            if not self.buffer:
                await self.error("input_audio_buffer_commit_empty", "the input audio buffer is empty")
            else:
                await self.commit()
        elif kind == "input_audio_buffer.clear":
            self.buffer_start += len(self.buffer) // 2
            self.buffer.clear()
            await self.send({"type": "input_audio_buffer.cleared"})
        elif kind == "conversation.item.create":
            item = dict(event["item"], id=self.server.new_id("item"))
            self.items[item["id"]] = item
            await self.send({"type": "conversation.item.created", "item": item})
        elif kind == "response.create":
            if self.response is not None and not self.response.done():
                await self.error("conversation_already_has_active_response", "a response is already in progress")
            else:
                modalities = (event.get("response") or {}).get("modalities") or self.session["modalities"]
                self.response = asyncio.create_task(self.respond(modalities))
        elif kind == "response.cancel":
            await self.stop_response()
        elif kind == "conversation.item.truncate":
            item = self.items.get(event.get("item_id", ""))
            if item is None or item.get("role") != "assistant":
                await self.error("item_not_found", f"no assistant item {event.get('item_id')!r}")
            else:
                item["audio_end_ms"] = event["audio_end_ms"]
                await self.send({"type": "conversation.item.truncated", "item_id": item["id"], "content_index": 0,
                                 "audio_end_ms": event["audio_end_ms"]})
        else:
            await self.error("unknown_event", f"unknown event type {kind!r}")

    async def append(self, pcm: bytes) -> None:
        self.buffer += pcm
        vad = self.session.get("turn_detection")
        if not vad:
            return
        samples = np.concatenate([self.pending, np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768])
        whole = len(samples) // FRAME * FRAME
        self.pending = samples[whole:]
        for start in range(0, whole, FRAME):
            loud = float(np.sqrt(np.mean(samples[start:start + FRAME] ** 2))) > 0.02
            self.position += FRAME
            ms = self.position * 1000 // RATE
            if loud and not self.speech_item:
                self.speech_item, self.quiet_frames = self.server.new_id("item"), 0
                await self.send({"type": "input_audio_buffer.speech_started", "item_id": self.speech_item,
                                 "audio_start_ms": max(0, ms - int(vad.get("prefix_padding_ms", 300)))})
                if vad.get("interrupt_response") and self.response is not None and not self.response.done():
                    await self.stop_response()
            elif self.speech_item:
                self.quiet_frames = 0 if loud else self.quiet_frames + 1
                if self.quiet_frames * 20 >= int(vad.get("silence_duration_ms", 500)):
                    await self.send({"type": "input_audio_buffer.speech_stopped", "item_id": self.speech_item,
                                     "audio_end_ms": ms})
                    await self.commit(self.speech_item)
                    self.speech_item = ""
                    if vad.get("create_response") and (self.response is None or self.response.done()):
                        self.response = asyncio.create_task(self.respond(self.session["modalities"]))

    async def commit(self, item_id: str = "") -> None:
        """Commit the buffer (with server VAD: up to the detector's position; the rest stays)."""
        item_id = item_id or self.server.new_id("item")
        cut = (self.position - self.buffer_start) * 2 if item_id == self.speech_item else len(self.buffer)
        ms = cut // 2 * 1000 // RATE
        del self.buffer[:cut]
        self.buffer_start += cut // 2
        self.items[item_id] = {"id": item_id, "role": "user", "type": "message", "audio_ms": ms}
        await self.send({"type": "input_audio_buffer.committed", "item_id": item_id})
        await self.send({"type": "conversation.item.input_audio_transcription.delta", "item_id": item_id,
                         "content_index": 0, "delta": f"{ms} ms"})
        await self.send({"type": "conversation.item.input_audio_transcription.completed", "item_id": item_id,
                         "content_index": 0, "transcript": f"{ms} ms of audio"})

    async def stop_response(self) -> None:
        task, self.response = self.response, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _wants_tool(self) -> dict[str, Any] | None:
        """The session's first tool, when the last item is a user message (not a tool's output)."""
        tools = self.session.get("tools") or []
        last = list(self.items.values())[-1] if self.items else {}
        return tools[0] if tools and last.get("role") == "user" else None

    async def call_tool(self, tool: dict[str, Any]) -> None:
        """A response whose output is one function call (documented function-calling flow)."""
        response_id, item_id, call_id = (self.server.new_id("resp"), self.server.new_id("item"),
                                         self.server.new_id("call"))
        arguments = json.dumps({"city": "Paris"})
        call = {"id": item_id, "type": "function_call", "call_id": call_id, "name": tool["name"],
                "arguments": arguments}
        self.items[item_id] = dict(call)
        await self.send({"type": "response.created", "response": {"id": response_id, "status": "in_progress"}})
        await self.send({"type": "response.output_item.added", "response_id": response_id, "output_index": 0,
                         "item": {**call, "arguments": ""}})
        await self.send({"type": "response.function_call_arguments.done", "response_id": response_id,
                         "item_id": item_id, "call_id": call_id, "arguments": arguments})
        await self.send({"type": "response.done", "response": {
            "id": response_id, "status": "completed", "output": [call],
            "usage": {"total_tokens": 12, "input_tokens": 10, "output_tokens": 2}}})

    async def respond(self, modalities: list[str]) -> None:
        tool = self._wants_tool()
        if tool is not None:
            await self.call_tool(tool)
            return
        response_id, item_id = self.server.new_id("resp"), self.server.new_id("item")
        status, sent = "completed", 0
        words = self.server.reply.split()
        input_tokens = sum(len(str(i.get("content", ""))) // 4 + 1 for i in self.items.values())
        await self.send({"type": "response.created", "response": {"id": response_id, "status": "in_progress"}})
        await self.send({"type": "response.output_item.added", "response_id": response_id, "output_index": 0,
                         "item": {"id": item_id, "type": "message", "role": "assistant"}})
        self.items[item_id] = {"id": item_id, "role": "assistant", "type": "message"}
        try:
            if "audio" in modalities:
                audio = self.server.reply_audio
                await self.send({"type": "response.audio_transcript.delta", "response_id": response_id,
                                 "item_id": item_id, "delta": self.server.reply})
                for sent in range(0, len(audio), self.server.delta_bytes):
                    piece = audio[sent:sent + self.server.delta_bytes]
                    await self.send({"type": "response.audio.delta", "response_id": response_id, "item_id": item_id,
                                     "delta": base64.b64encode(piece).decode()})
                    await asyncio.sleep(self.server.pace_s)
            else:
                for sent, word in enumerate(words):
                    await self.send({"type": "response.text.delta", "response_id": response_id, "item_id": item_id,
                                     "delta": word if sent == 0 else " " + word})
                    await asyncio.sleep(self.server.pace_s)
        except asyncio.CancelledError:
            status = "cancelled"
        usage = {"total_tokens": input_tokens + len(words), "input_tokens": input_tokens, "output_tokens": len(words),
                 "input_token_details": {"cached_tokens": 0}}
        await asyncio.shield(self.send({"type": "response.done", "response": {
            "id": response_id, "status": status, "output": [{"id": item_id, "type": "message"}], "usage": usage}}))
