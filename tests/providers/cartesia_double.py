"""A loopback double of Cartesia's TTS WebSocket (``/tts/websocket``), speaking with piper.

Follows Cartesia's documented protocol: the key in ``X-API-Key`` (or a bearer
token, or the ``api_key`` query), the version in ``Cartesia-Version`` (or
``cartesia_version``); JSON generation requests with ``model_id``,
``transcript``, ``voice: {mode: "id", id}``, ``output_format`` (raw
``pcm_s16le`` at a rate), ``context_id``, ``continue``, ``flush`` and
``add_timestamps``; answers ``chunk`` (base64 ``data``, ``flush_id``),
``timestamps`` (``word_timestamps``), ``flush_done``, ``done`` and ``error``
frames with an HTTP-like ``status_code``; ``{"context_id", "cancel": true}``
stops a context. A manual flush ends one transcript's audio (its chunks carry
the flush's ``flush_id``, from 1). ``fault`` makes it misbehave: ``quota``
(error frame 402), ``malformed`` (a frame that is not JSON), ``drop`` (the TCP
connection cut after the first chunk), ``stall`` (requests read, never answered).
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from tests.loopback import LoopbackServer
from tests.providers.tts_loopback import even_words, in_thread, piper_pcm

RATES = (8000, 16000, 22050, 24000, 44100, 48000)
CHUNK_S = 0.1  # audio per chunk frame
PACE_S = 0.02  # wall time between chunk frames: faster than real time, yet a barge-in lands mid-reply


@dataclass
class _Context:
    transcript: str = ""
    flush_id: int = 1
    cancelled: bool = False
    jobs: asyncio.Queue = field(default_factory=asyncio.Queue)


class CartesiaDouble(LoopbackServer):
    def __init__(self, api_key: str = "sk-cartesia-test", fault: str = "", **tls) -> None:
        super().__init__(**tls)
        self.api_key = api_key
        self.fault = fault
        self.requests: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.cancelled: list[str] = []

    def check(self, ws: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.headers.append(dict(request.headers.raw_items()))
        if url.path != "/tts/websocket":
            return ws.respond(404, "Not Found\n")
        bearer = (request.headers.get("Authorization") or "").removeprefix("Bearer ")
        key = request.headers.get("X-API-Key") or bearer or query.get("api_key")
        if key != self.api_key:
            return ws.respond(401, '{"error": "Invalid API key"}\n')
        if not (request.headers.get("Cartesia-Version") or query.get("cartesia_version")):
            return ws.respond(400, '{"error": "Cartesia-Version is required"}\n')
        return None

    async def handle(self, ws: ServerConnection) -> None:
        contexts: dict[str, _Context] = {}
        workers: list[asyncio.Task] = []
        try:
            async for frame in ws:
                message = json.loads(frame)
                self.requests.append(message)
                context_id = message.get("context_id", "")
                if message.get("cancel"):
                    if context_id in contexts:
                        contexts[context_id].cancelled = True
                    self.cancelled.append(context_id)
                    continue
                if error := _invalid(message):
                    await ws.send(json.dumps({"type": "error", "status_code": 400, "title": "Invalid request",
                                              "message": error, "context_id": context_id, "done": True}))
                    continue
                if self.fault == "quota":
                    await ws.send(json.dumps({"type": "error", "status_code": 402, "title": "Payment Required",
                                              "message": "Credit limit reached for this billing period",
                                              "error_code": "quota_exceeded", "context_id": context_id, "done": True}))
                    continue
                if self.fault == "stall":
                    continue  # accepted and never answered: a stalled provider
                if self.fault == "malformed":
                    await ws.send("<html>502 Bad Gateway</html>")
                    continue
                context = contexts.get(context_id)
                if context is None:
                    context = contexts[context_id] = _Context()
                    workers.append(asyncio.create_task(self._speak(ws, context_id, context)))
                context.transcript += message["transcript"]
                if message.get("flush"):
                    await context.jobs.put(("flush", context.transcript, dict(message)))
                    context.transcript = ""
                elif not message.get("continue", False):
                    await context.jobs.put(("done", context.transcript, dict(message)))
                    context.transcript = ""
        except Exception:  # the client went away: nothing more to say
            pass
        finally:
            for worker in workers:
                worker.cancel()

    async def _speak(self, ws: ServerConnection, context_id: str, context: _Context) -> None:
        while True:
            kind, transcript, request = await context.jobs.get()
            rate = request["output_format"]["sample_rate"]
            flush_id = context.flush_id
            if transcript.strip() and not context.cancelled:
                pcm = await in_thread(piper_pcm, transcript, rate)
                if request["output_format"]["encoding"] == "pcm_f32le":
                    pcm = (np.frombuffer(pcm, "<i2") / 32768.0).astype("<f4").tobytes()
                step = int(rate * CHUNK_S) * (4 if request["output_format"]["encoding"] == "pcm_f32le" else 2)
                for start in range(0, len(pcm), step):
                    if context.cancelled:
                        break
                    await ws.send(json.dumps({"type": "chunk", "context_id": context_id, "status_code": 206,
                                              "done": False, "step_time": 1.0, "flush_id": flush_id,
                                              "data": base64.b64encode(pcm[start:start + step]).decode()}))
                    if self.fault == "drop":
                        ws.transport.abort()
                        return
                    await asyncio.sleep(PACE_S)
                if request.get("add_timestamps") and not context.cancelled:
                    words, starts, ends = even_words(transcript, len(pcm) / step * CHUNK_S)
                    await ws.send(json.dumps({"type": "timestamps", "context_id": context_id, "status_code": 206,
                                              "done": False, "flush_id": flush_id,
                                              "word_timestamps": {"words": words, "start": starts, "end": ends}}))
            if context.cancelled:
                continue  # a cancelled context says nothing more
            if kind == "flush":
                context.flush_id += 1
                await ws.send(json.dumps({"type": "flush_done", "context_id": context_id, "status_code": 206,
                                          "done": False, "flush_done": True, "flush_id": flush_id}))
            else:
                await ws.send(json.dumps({"type": "done", "context_id": context_id, "status_code": 206,
                                          "done": True}))


def _invalid(message: dict) -> str:
    voice = message.get("voice") or {}
    output = message.get("output_format") or {}
    if not message.get("model_id") or not isinstance(message.get("transcript"), str):
        return "model_id and transcript are required"
    if voice.get("mode") != "id" or not voice.get("id"):
        return "voice must be {mode: id, id: ...}"
    if output.get("container") != "raw" or output.get("encoding") not in ("pcm_s16le", "pcm_f32le"):
        return "output_format must be raw pcm"
    if output.get("sample_rate") not in RATES:
        return f"unsupported sample_rate {output.get('sample_rate')}"
    if not message.get("context_id"):
        return "context_id is required"
    return ""
