"""A loopback double of ElevenLabs' stream-input WebSocket, speaking with piper.

Follows the documented protocol: ``/v1/text-to-speech/{voice_id}/stream-input``
with ``model_id`` and ``output_format`` (``pcm_<rate>``) in the query; the key
in the ``xi-api-key`` header or in the first message; the first message is
``{"text": " "}`` with optional settings, then text pieces (buffered until
``flush``, ``try_trigger_generation`` at a sentence end, or the end), and
``{"text": ""}`` ends the input. Answers are ``{"audio": <base64>,
"alignment": {chars, charStartTimesMs, charDurationsMs}, "normalizedAlignment":
...}`` and finally ``{"isFinal": true}``, after which the socket closes (1000).
A bad key or an exhausted quota is an error message and a 1008 close.
``fault``: ``quota``, ``malformed`` (a frame that is not JSON), ``drop`` (the
TCP connection cut after the first audio).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.loopback import LoopbackServer
from tests.providers.tts_loopback import in_thread, piper_pcm

PATH = re.compile(r"^/v1/text-to-speech/([A-Za-z0-9]+)/stream-input$")
RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
CHUNK_S = 0.1
PACE_S = 0.02


@dataclass
class Connection:
    """What one socket saw."""

    voice: str
    query: dict[str, str]
    headers: dict[str, str]
    messages: list[dict] = field(default_factory=list)
    final_sent: bool = False
    closed_by_client: bool = False


class ElevenLabsDouble(LoopbackServer):
    def __init__(self, api_key: str = "xi-test", fault: str = "", **tls) -> None:
        super().__init__(**tls)
        self.api_key = api_key
        self.fault = fault
        self.connections: list[Connection] = []

    def check(self, ws: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        match = PATH.match(url.path)
        if not match:
            return ws.respond(404, "Not Found\n")
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if query.get("output_format", "mp3_44100_128").startswith("pcm_") and \
                int(query["output_format"][4:]) not in RATES:
            return ws.respond(400, '{"detail": "unsupported output_format"}\n')
        ws.record = Connection(match.group(1), query, dict(request.headers.raw_items()))  # type: ignore[attr-defined]
        return None

    async def handle(self, ws: ServerConnection) -> None:
        record: Connection = ws.record  # type: ignore[attr-defined]
        self.connections.append(record)
        rate = int(record.query.get("output_format", "pcm_16000").removeprefix("pcm_").split("_")[0])
        buffer = ""
        try:
            first = json.loads(await ws.recv())
            record.messages.append(first)
            key = record.headers.get("xi-api-key") or first.get("xi-api-key")
            if first.get("text") != " ":
                await self._fail(ws, "The first message must be a single space", "invalid_request", 1008)
                return
            if key != self.api_key:
                await self._fail(ws, "Invalid API key", "invalid_api_key", 1008, "Invalid API key")
                return
            if self.fault == "quota":
                await self._fail(ws, "This request exceeds your quota of 10000 characters", "quota_exceeded", 1008,
                                 "quota_exceeded")
                return
            async for frame in ws:
                message = json.loads(frame)
                record.messages.append(message)
                if self.fault == "malformed":
                    await ws.send("{\"audio\": ")
                    continue
                buffer += message.get("text", "")
                end = message.get("text") == ""
                trigger = message.get("try_trigger_generation") and buffer.rstrip().endswith((".", "?", "!"))
                if (message.get("flush") or trigger or end) and buffer.strip():
                    await self._speak(ws, buffer, rate)
                    buffer = ""
                if end:
                    await ws.send(json.dumps({"isFinal": True}))
                    record.final_sent = True
                    await ws.close(1000)
                    return
        except ConnectionClosed:
            record.closed_by_client = not record.final_sent  # the client left before the end of its input

    async def _fail(self, ws: ServerConnection, message: str, error: str, code: int, reason: str = "") -> None:
        await ws.send(json.dumps({"message": message, "error": error, "code": code}))
        await ws.close(code, reason or error)

    async def _speak(self, ws: ServerConnection, text: str, rate: int) -> None:
        pcm = await in_thread(piper_pcm, text.strip(), rate)
        step = int(rate * CHUNK_S) * 2
        chars = list(text.strip())
        seconds = len(pcm) / 2 / rate
        per_char_ms = seconds * 1000 / max(1, len(chars))
        starts = [round(i * per_char_ms) for i in range(len(chars))]
        for start in range(0, len(pcm), step):
            window = (start / 2 / rate * 1000, (start + step) / 2 / rate * 1000)
            idx = [i for i, t in enumerate(starts) if window[0] <= t < window[1] or (start + step >= len(pcm) and t >= window[0])]
            alignment = {"chars": [chars[i] for i in idx], "charStartTimesMs": [starts[i] for i in idx],
                         "charDurationsMs": [round(per_char_ms)] * len(idx)}
            await ws.send(json.dumps({"audio": base64.b64encode(pcm[start:start + step]).decode(),
                                      "isFinal": None, "alignment": alignment, "normalizedAlignment": alignment}))
            if self.fault == "drop":
                ws.transport.abort()
                return
            await asyncio.sleep(PACE_S)
