"""A loopback server that speaks the documented Gemini Live API (``BidiGenerateContent`` over a WebSocket).

A test double for the paid cloud API. It serves the documented path
``/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent`` (and the SDK's ``v1``), takes the key as the
``key`` query parameter or the ``x-goog-api-key`` header, and wants ``setup`` (with ``models/<name>``)
first; it answers ``setupComplete``. A wrong key is closed with 1007 and "API key not valid", as the API
does. Server messages are JSON in binary frames, as the API sends them.

Input: ``realtimeInput.audio`` (base64 PCM, ``audio/pcm;rate=16000``); with automatic activity detection
an energy detector ends the user's turn after ``silenceDurationMs`` of quiet (and speech during a reply
interrupts it: ``interrupted``), without it ``activityStart``/``activityEnd`` bound the turn;
``clientContent`` (``turnComplete`` asks for an answer) and ``toolResponse``. It cannot understand speech,
so its ``inputTranscription`` says how many milliseconds of audio it got.

Output: a tool call (``toolCall`` of the first declared function, args ``{"city": "Paris"}``) when tools
are declared and the turn is the user's; after a tool response ``AFTER_TOOL``; otherwise ``REPLY``, as
``modelTurn`` inline data (the piper voice at 24 kHz) with ``outputTranscription``, or as text parts,
then ``generationComplete``, ``turnComplete`` and ``usageMetadata``. ``fail``: ``"quota"`` closes with
1011 and the quota message at setup, ``"malformed"`` sends a frame that is not JSON, ``"drop"`` drops
the connection mid-reply, ``"goaway"`` sends ``goAway`` and closes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from tests.loopback import LoopbackServer
from tests.speech import speak

# The documented raw WebSocket uses v1beta; google-genai 3.x connects to v1 (v1alpha for ephemeral tokens).
PATHS = {f"/ws/google.ai.generativelanguage.{v}.GenerativeService.BidiGenerateContent" for v in ("v1beta", "v1", "v1alpha")}
IN_RATE, OUT_RATE = 16000, 24000
REPLY = "The capital of France is Paris."
AFTER_TOOL = "It is sunny in Paris."
FRAME = IN_RATE // 50  # 20 ms


_OPAQUE = {"parameters", "args", "response", "parametersJsonSchema", "responseJsonSchema"}  # user JSON: kept


def camel(value: Any) -> Any:
    """Field names as lowerCamelCase: the API parses JSON as protobuf does, accepting either spelling
    (google-genai sends ``realtime_input``, the docs write ``realtimeInput``)."""
    if isinstance(value, list):
        return [camel(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        head, *rest = key.split("_")
        name = head + "".join(word[:1].upper() + word[1:] for word in rest)
        out[name] = item if name in _OPAQUE else camel(item)
    return out


def _bytes(data: str) -> bytes:
    """Protobuf JSON bytes: standard or URL-safe base64, padded or not (google-genai sends URL-safe)."""
    data = data.replace("-", "+").replace("_", "/")
    return base64.b64decode(data + "=" * (-len(data) % 4), validate=True)


class FakeLiveServer(LoopbackServer):
    """Runs in its own thread and event loop; ``url`` is the base URL (``http_options.base_url`` of the SDK)."""

    def __init__(self, api_key: str = "test-google-key", pace_s: float = 0.02, tls: ssl.SSLContext | None = None):
        self.api_key = api_key
        super().__init__(tls)  # a TLS context: the SDK always connects with wss://
        self.pace_s = pace_s
        self.fail = ""
        self.audio = {text: speak(text, OUT_RATE) for text in (REPLY, AFTER_TOOL)}
        self.handshakes: list[dict[str, str]] = []
        self.messages: list[dict[str, Any]] = []  # client messages, audio data left out

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def check(self, connection: ServerConnection, request: Any) -> Any:
        headers = {k.lower(): v for k, v in request.headers.raw_items()}
        self.handshakes.append({"path": request.path, **headers})
        if urlsplit(request.path).path not in PATHS:
            return connection.respond(404, "not found\n")
        return None

    def _key(self, ws: ServerConnection) -> str:
        query = parse_qs(urlsplit(ws.request.path).query)
        return (query.get("key") or [""])[0] or ws.request.headers.get("x-goog-api-key", "")

    async def handle(self, ws: ServerConnection) -> None:
        session = _Session(self, ws)
        try:
            await session.run()
        except ConnectionClosed:
            pass
        finally:
            await session.stop_reply()


class _Session:
    def __init__(self, server: FakeLiveServer, ws: ServerConnection):
        self.server, self.ws = server, ws
        self.setup: dict[str, Any] = {}
        self.reply: asyncio.Task | None = None
        self.turn_ms = 0  # audio of the user's turn so far
        self.speaking = False
        self.quiet_frames = 0
        self.pending = np.zeros(0, dtype=np.float32)
        self.after_tool = False

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message).encode())  # binary frames, as the API sends them

    async def run(self) -> None:
        first = camel(json.loads(await self.ws.recv()))
        self.server.messages.append(first)
        if self.server._key(self.ws) != self.server.api_key:
            await self.ws.close(1007, "API key not valid. Please pass a valid API key.")
            return
        setup = first.get("setup")
        if not isinstance(setup, dict) or not str(setup.get("model", "")).startswith("models/"):
            await self.ws.close(1007, "Invalid JSON payload received. The first message must be setup.")
            return
        if self.server.fail == "quota":
            await self.ws.close(1011, "You exceeded your current quota, please check your plan and billing details.")
            return
        self.setup = setup
        await self.send({"setupComplete": {}})
        async for raw in self.ws:
            await self.on_message(camel(json.loads(raw)))

    @property
    def detection(self) -> dict[str, Any]:
        return (self.setup.get("realtimeInputConfig") or {}).get("automaticActivityDetection") or {}

    @property
    def auto(self) -> bool:
        return not self.detection.get("disabled", False)

    async def on_message(self, message: dict[str, Any]) -> None:
        realtime = message.get("realtimeInput") or {}
        audio = realtime.get("audio")
        logged = {**message, "realtimeInput": {**realtime, "audio": {**audio, "data": "…"}}} if audio else message
        self.server.messages.append(logged)
        if audio:
            if audio.get("mimeType") != f"audio/pcm;rate={IN_RATE}":
                await self.ws.close(1007, f"Unsupported audio mimeType {audio.get('mimeType')!r}")
                return
            await self.hear(_bytes(audio["data"]))
        if "activityStart" in realtime:
            await self.stop_reply(interrupted=True)
            self.turn_ms = 0
        if "activityEnd" in realtime:
            self.start_reply()
        content = message.get("clientContent")
        if content is not None and content.get("turnComplete"):
            self.start_reply()
        if "toolResponse" in message:
            self.after_tool = True
            self.start_reply()

    async def hear(self, pcm: bytes) -> None:
        self.turn_ms += len(pcm) // 2 * 1000 // IN_RATE
        if not self.auto:
            return
        samples = np.concatenate([self.pending, np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768])
        whole = len(samples) // FRAME * FRAME
        self.pending = samples[whole:]
        silence_ms = int(self.detection.get("silenceDurationMs") or 500)
        for start in range(0, whole, FRAME):
            loud = float(np.sqrt(np.mean(samples[start:start + FRAME] ** 2))) > 0.02
            if loud and not self.speaking:
                self.speaking, self.quiet_frames = True, 0
                await self.stop_reply(interrupted=True)
            elif self.speaking:
                self.quiet_frames = 0 if loud else self.quiet_frames + 1
                if self.quiet_frames * 20 >= silence_ms:
                    self.speaking = False
                    self.start_reply()

    def start_reply(self) -> None:
        if self.reply is None or self.reply.done():
            heard_ms, self.turn_ms = self.turn_ms, 0
            self.reply = asyncio.create_task(self.respond(heard_ms))

    async def stop_reply(self, interrupted: bool = False) -> None:
        task, self.reply = self.reply, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if interrupted:
                await self.send({"serverContent": {"interrupted": True}})

    async def respond(self, heard_ms: int) -> None:
        if heard_ms:
            await self.send({"serverContent": {"inputTranscription": {"text": f"{heard_ms} ms"}}})
            await self.send({"serverContent": {"inputTranscription": {"text": " of audio"}}})
        tools = [f for group in self.setup.get("tools") or () for f in group.get("functionDeclarations") or ()]
        if tools and not self.after_tool:
            await self.send({"toolCall": {"functionCalls": [
                {"id": "function-call-1", "name": tools[0]["name"], "args": {"city": "Paris"}}]},
                "usageMetadata": {"promptTokenCount": 20, "responseTokenCount": 5, "totalTokenCount": 25}})
            return
        text = AFTER_TOOL if self.after_tool else REPLY
        self.after_tool = False
        if self.server.fail == "malformed":
            await self.ws.send(b"{not json")
            return
        words = text.split(" ")
        if (self.setup.get("generationConfig") or {}).get("responseModalities") == ["AUDIO"]:
            audio = self.server.audio[text]
            step = OUT_RATE // 10 * 2  # 100 ms
            pieces = range(0, len(audio), step)
            for n, start in enumerate(pieces):
                if self.server.fail == "drop" and n == 2:
                    self.ws.transport.abort()
                    return
                content: dict[str, Any] = {"modelTurn": {"parts": [{"inlineData": {
                    "mimeType": f"audio/pcm;rate={OUT_RATE}",
                    "data": base64.b64encode(audio[start:start + step]).decode()}}]}}
                if n < len(words):
                    content["outputTranscription"] = {"text": words[n] if n == 0 else " " + words[n]}
                await self.send({"serverContent": content})
                await asyncio.sleep(self.server.pace_s)
            rest = " ".join(words[len(pieces):])
            if rest:
                await self.send({"serverContent": {"outputTranscription": {"text": " " + rest}}})
        else:
            for n, word in enumerate(words):
                await self.send({"serverContent": {"modelTurn": {"parts": [{"text": word if n == 0 else " " + word}]}}})
                await asyncio.sleep(self.server.pace_s)
        if self.server.fail == "goaway":
            await self.send({"goAway": {"timeLeft": "0s"}})
            await self.ws.close(1000, "")
            return
        await self.send({"serverContent": {"generationComplete": True}})
        await self.send({"serverContent": {"turnComplete": True},
                         "usageMetadata": {"promptTokenCount": 30, "responseTokenCount": len(words) * 4,
                                           "totalTokenCount": 30 + len(words) * 4}})
