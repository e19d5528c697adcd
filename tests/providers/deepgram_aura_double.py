"""A loopback double of Deepgram's Aura streaming TTS WebSocket (``/v1/speak``), speaking with piper.

Follows the documented protocol: ``model``, ``encoding=linear16`` and
``sample_rate`` in the query, ``Authorization: Token <key>`` (a bad key is
HTTP 401 at the handshake, no credits 402); a ``Metadata`` message first;
client messages ``Speak`` (text), ``Flush`` (speak what was sent: binary audio
frames, then ``Flushed`` with a ``sequence_id``), ``Clear`` (drop the rest:
``Cleared``) and ``Close``. ``fault``: ``malformed`` (a text frame that is
not JSON), ``drop`` (the TCP connection cut after the first audio), ``bad_data`` (the 1008 close with
``DATA-0000`` that Deepgram sends for a payload it cannot use).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.loopback import LoopbackServer
from tests.providers.tts_loopback import in_thread, piper_pcm

RATES = (8000, 16000, 24000, 32000, 48000)
CHUNK_S = 0.1
PACE_S = 0.02


class DeepgramAuraDouble(LoopbackServer):
    def __init__(self, api_key: str = "dg-test", fault: str = "", **tls) -> None:
        super().__init__(**tls)
        self.api_key = api_key
        self.fault = fault
        self.queries: list[dict[str, str]] = []
        self.messages: list[dict] = []
        self.clears = 0

    def check(self, ws: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path != "/v1/speak":
            return ws.respond(404, "Not Found\n")
        if request.headers.get("Authorization") != f"Token {self.api_key}":
            return ws.respond(401, '{"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials."}\n')
        if self.fault == "quota":
            return ws.respond(402, '{"err_code": "ASR_PAYMENT_REQUIRED", "err_msg": "Project does not have enough credits"}\n')
        if not query.get("model", "").startswith("aura") or query.get("encoding") != "linear16" or \
                int(query.get("sample_rate", "24000")) not in RATES:
            return ws.respond(400, '{"err_code": "Bad Request", "err_msg": "unsupported model or encoding"}\n')
        self.queries.append(query)
        return None

    async def handle(self, ws: ServerConnection) -> None:
        query = self.queries[-1]
        rate = int(query.get("sample_rate", "24000"))
        state = {"text": "", "sequence": 0, "speaking": None}
        await ws.send(json.dumps({"type": "Metadata", "request_id": str(uuid.uuid4()), "model_name": query["model"],
                                  "model_version": "2025-01-01.0", "model_uuid": str(uuid.uuid4())}))
        try:
            async for frame in ws:
                message = json.loads(frame)
                self.messages.append(message)
                kind = message.get("type")
                if self.fault == "malformed":
                    await ws.send("Flushed")
                elif self.fault == "bad_data":
                    await ws.close(1008, "DATA-0000")  # Deepgram's close for a payload it cannot use
                    return
                elif kind == "Speak":
                    state["text"] += message.get("text", "")
                elif kind == "Flush":
                    text, state["text"] = state["text"], ""
                    sequence, state["sequence"] = state["sequence"], state["sequence"] + 1
                    state["speaking"] = asyncio.create_task(self._speak(ws, text, rate, sequence))
                elif kind == "Clear":
                    self.clears += 1
                    if state["speaking"] is not None:
                        state["speaking"].cancel()
                    state["text"] = ""
                    await ws.send(json.dumps({"type": "Cleared", "sequence_id": state["sequence"]}))
                elif kind == "Close":
                    await ws.close(1000)
                    return
                else:
                    await ws.send(json.dumps({"type": "Warning", "description": f"unknown message type {kind!r}",
                                              "code": "UNKNOWN_MESSAGE"}))
        except ConnectionClosed:
            pass

    async def _speak(self, ws: ServerConnection, text: str, rate: int, sequence: int) -> None:
        try:
            pcm = await in_thread(piper_pcm, text, rate) if text.strip() else b""
            step = int(rate * CHUNK_S) * 2
            for start in range(0, len(pcm), step):
                await ws.send(pcm[start:start + step])
                if self.fault == "drop":
                    ws.transport.abort()
                    return
                await asyncio.sleep(PACE_S)
            await ws.send(json.dumps({"type": "Flushed", "sequence_id": sequence}))
        except ConnectionClosed:
            pass
