"""``/v1/realtime``: the OpenAI Realtime API over a WebSocket, translated onto RealtimeService.Converse.

The key comes from ``Authorization: Bearer`` or, for browsers, the subprotocol
``openai-insecure-api-key.<key>``; the mesh checks it (and the model name) before the socket is
accepted. ``session.created`` goes out at once; the Converse stream opens on the first event that
needs the model, with every ``session.update`` received so far as its config (so a client can
still turn server VAD off, which a running Converse stream cannot express). A client event the
mesh cannot take gets an ``error`` event and the session stays open, as OpenAI's does; a failed
stream gets an ``error`` event and the socket closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING

import grpc
from starlette.websockets import WebSocket, WebSocketDisconnect

from voicemesh.descriptors import parse
from voicemesh.errors import InvalidInput, VoiceMeshError
from voicemesh.gateway import realtime_events as ev
from voicemesh.gateway.errors import exception_error
from voicemesh.gateway.limits import Refused
from voicemesh.v1 import realtime_pb2

if TYPE_CHECKING:
    from voicemesh.gateway.app import Gateway

log = logging.getLogger(__name__)

KEY_PROTOCOL = "openai-insecure-api-key."
R = realtime_pb2.ConverseRequest


async def realtime(gateway: Gateway, websocket: WebSocket) -> None:
    protocols = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    authorization = websocket.headers.get("authorization", "")
    for protocol in protocols:
        if protocol.startswith(KEY_PROTOCOL):
            authorization = f"Bearer {protocol[len(KEY_PROTOCOL):]}"
    beta = "realtime=v1" in websocket.headers.get("openai-beta", "") or "openai-beta.realtime-v1" in protocols
    transcription = websocket.query_params.get("intent") == "transcription"
    name = websocket.query_params.get("model") or ("gpt-4o-transcribe" if transcription else "gpt-realtime")
    try:
        model = gateway.names.model(name)
        if transcription:
            # The realtime service transcribes with its own STT, so the model named only has to exist:
            # the session runs on the mesh's default realtime model with responses turned off.
            model = gateway.names.model("gpt-realtime")
        gateway.mesh.addresses("realtime", parse(model).provider)  # ModelNotFound without a realtime service
        await gateway.keys.check("realtime", authorization)
    except (VoiceMeshError, Refused) as exc:
        await _deny(websocket, exc)
        return
    await websocket.accept(subprotocol="realtime" if "realtime" in protocols else None)
    metadata = (("authorization", authorization),) if authorization else ()
    bridge = Bridge(gateway, websocket, model=model, name=name, beta=beta, metadata=metadata,
                    transcription=transcription)
    await bridge.run()


async def _deny(websocket: WebSocket, exc: BaseException) -> None:
    """Refuse the upgrade with the HTTP error OpenAI's clients expect, where the server can send one."""
    from starlette.responses import JSONResponse

    if isinstance(exc, Refused):
        response = exc.response()
    else:
        status, body, headers = exception_error(exc)
        response = JSONResponse(body, status_code=status, headers=headers)
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:
        await websocket.close(code=1008, reason=json.loads(response.body)["error"]["message"][:120])


class Bridge:
    """One Realtime session: client events in, Converse requests out, and back."""

    def __init__(self, gateway: Gateway, websocket: WebSocket, *, model: str, name: str, beta: bool, metadata,
                 transcription: bool = False):
        self.gateway, self.websocket = gateway, websocket
        self.model, self.name, self.beta, self.metadata = model, name, beta, metadata
        self.events = ev.ServerEvents(beta=beta)
        self.config = realtime_pb2.RealtimeSessionConfig(
            model=model, input_sample_rate_hz=ev.RATE_HZ, output_sample_rate_hz=ev.RATE_HZ,
            turn_detection=ev._vad(ev.DEFAULT_VAD))
        self.view = {"id": ev.new_id("sess"), "instructions": "", "voice": "alloy", "tools": [],
                     "turn_detection": dict(ev.DEFAULT_VAD), "modalities": ["text", "audio"]}
        self.requests: asyncio.Queue[realtime_pb2.ConverseRequest | None] = asyncio.Queue()
        self.reader: asyncio.Task | None = None
        self.call = None
        self.updates_pending = 0
        self.closed = asyncio.Event()
        self.transcription = transcription
        if transcription:  # a transcription session: server VAD commits turns, nothing answers them
            self.config.turn_detection.create_response = False
            self.view["turn_detection"]["create_response"] = False

    async def send(self, event: dict) -> None:
        await self.websocket.send_text(json.dumps(event))

    def session(self) -> dict:
        view = self.view
        if self.beta:
            return {"id": view["id"], "object": "realtime.session", "model": self.name,
                    "modalities": view["modalities"], "instructions": view["instructions"], "voice": view["voice"],
                    "input_audio_format": "pcm16", "output_audio_format": "pcm16",
                    "turn_detection": view["turn_detection"], "tools": view["tools"]}
        audio_format = {"type": "audio/pcm", "rate": ev.RATE_HZ}
        if self.transcription:
            return {"type": "transcription", "object": "realtime.transcription_session", "id": view["id"],
                    "audio": {"input": {"format": audio_format, "turn_detection": view["turn_detection"],
                                        "transcription": {"model": self.name}}}}
        return {"type": "realtime", "object": "realtime.session", "id": view["id"], "model": self.name,
                "output_modalities": ["text"] if view["modalities"] == ["text"] else ["audio"],
                "instructions": view["instructions"], "tools": view["tools"],
                "audio": {"input": {"format": audio_format, "turn_detection": view["turn_detection"]},
                          "output": {"format": audio_format, "voice": view["voice"]}}}

    async def run(self) -> None:
        try:
            await self.send(self.events.event("session.created", session=self.session()))
            receiving = asyncio.ensure_future(self._receive())
            closed = asyncio.ensure_future(self.closed.wait())
            await asyncio.wait({receiving, closed}, return_when=asyncio.FIRST_COMPLETED)
            for task in (receiving, closed):
                task.cancel()
        finally:
            await self.requests.put(None)
            if self.reader is not None:
                self.reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self.reader
            if self.call is not None:
                self.call.cancel()
            with contextlib.suppress(Exception):
                await self.websocket.close()

    async def _receive(self) -> None:
        while True:
            try:
                text = await self.websocket.receive_text()
            except WebSocketDisconnect:
                return
            event_id = None
            try:
                event = json.loads(text)
                if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                    raise InvalidInput("a client event is a JSON object with a 'type'", reason="type")
                event_id = event.get("event_id")
                await self._handle(event)
            except json.JSONDecodeError as exc:
                await self.send(ev.error_event(f"the client event is not JSON: {exc}", "invalid_json"))
            except InvalidInput as exc:
                param = exc.reason if exc.reason != InvalidInput.reason else None
                await self.send(ev.error_event(exc.message, "invalid_value", param, event_id))
            except VoiceMeshError as exc:
                _status, body, _headers = exception_error(exc)
                await self.send({**ev.error_event(exc.message, event_id=event_id), "error": body["error"]})

    def _forward(self, request: realtime_pb2.ConverseRequest) -> None:
        if self.call is None:  # the stream opens with everything the session was told so far
            stub = self.gateway.stub("realtime", self.model)
            self.call = stub.Converse(self._requests(), metadata=self.metadata)
            self.reader = asyncio.ensure_future(self._read())
        self.requests.put_nowait(request)

    async def _requests(self):
        yield R(session_update=self.config)
        while (request := await self.requests.get()) is not None:
            yield request

    async def _read(self) -> None:
        try:
            async for response in self.call:
                if response.WhichOneof("event") == "session_updated":
                    if self.updates_pending:
                        self.updates_pending -= 1
                        await self.send(self.events.event("session.updated", session=self.session()))
                    continue
                for event in self.events.translate(response):
                    await self.send(event)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.CANCELLED:
                _status, body, _headers = exception_error(exc)
                with contextlib.suppress(Exception):
                    await self.send({"type": "error", "event_id": ev.new_id("event"), "error": body["error"]})
        finally:
            self.closed.set()

    async def _handle(self, event: dict) -> None:
        kind = event["type"]
        if kind in ("session.update", "transcription_session.update"):
            await self._session_update(event.get("session"))
        elif kind == "input_audio_buffer.append":
            for chunk in ev.audio_chunks(event):
                self._forward(R(input_audio_append=chunk))
        elif kind == "input_audio_buffer.commit":
            self._forward(R(input_audio_commit=realtime_pb2.InputAudioCommit()))
        elif kind == "input_audio_buffer.clear":
            self._forward(R(input_audio_clear=realtime_pb2.InputAudioClear()))
            await self.send(self.events.event("input_audio_buffer.cleared"))
        elif kind == "conversation.item.create":
            message = ev.chat_item(event.get("item"))
            item = {"object": "realtime.item", "status": "completed", **event["item"]}
            item.setdefault("id", ev.new_id("item"))  # the mesh's item gets this id too: truncate/delete find it
            self._forward(R(item_create=realtime_pb2.ConversationItemCreate(item=message, item_id=str(item["id"]))))
            for out in self.events.item_created(item):
                await self.send(out)
        elif kind == "conversation.item.truncate":
            if not event.get("item_id") or not isinstance(event.get("audio_end_ms"), int):
                raise InvalidInput("conversation.item.truncate needs item_id and audio_end_ms", reason="item_id")
            self._forward(R(item_truncate=realtime_pb2.ItemTruncate(item_id=event["item_id"],
                                                                    audio_end_ms=event["audio_end_ms"])))
        elif kind == "response.create" and self.transcription:
            raise InvalidInput("a transcription session makes no responses", reason="type")
        elif kind == "response.create":
            response = event.get("response") if isinstance(event.get("response"), dict) else {}
            modalities = response.get("output_modalities") or response.get("modalities") or []
            self.events.metadata.append(response.get("metadata"))
            self._forward(R(response_create=realtime_pb2.ResponseCreate(modalities=modalities)))
        elif kind == "response.cancel":
            self._forward(R(response_cancel=realtime_pb2.ResponseCancel()))  # one may be starting
            if not self.events.responses:  # as OpenAI: an error event, and the session goes on
                await self.send(ev.error_event("Cancellation failed: no active response found",
                                               "response_cancel_not_active", None, event.get("event_id")))
        elif kind == "conversation.item.delete":
            if not isinstance(event.get("item_id"), str) or not event["item_id"]:
                raise InvalidInput("conversation.item.delete needs item_id", reason="item_id")
            self._forward(R(item_delete=realtime_pb2.ItemDelete(item_id=event["item_id"])))
        else:
            raise InvalidInput(f"unknown client event type {kind!r}", reason="type")

    async def _session_update(self, session) -> None:
        fields, vad_off = ev.session_fields(session, lambda v: self.gateway.names.voices.get(v, v))
        if vad_off and self.call is not None:
            raise InvalidInput("server VAD cannot be turned off once audio or a response has started; send "
                               "turn_detection: null in the first session.update", reason="turn_detection")
        if self.transcription and "turn_detection" in fields:
            fields["turn_detection"].create_response = False
        update = realtime_pb2.RealtimeSessionConfig(**fields)
        self._remember(session, fields, vad_off)
        if self.call is None:
            for repeated in ("tools", "modalities"):
                if repeated in fields:
                    self.config.ClearField(repeated)
            self.config.MergeFrom(update)
            if vad_off:
                self.config.ClearField("turn_detection")
            await self.send(self.events.event("session.updated", session=self.session()))
        else:
            self.updates_pending += 1
            self._forward(R(session_update=update))

    def _remember(self, session: dict, fields: dict, vad_off: bool) -> None:
        if "instructions" in fields:
            self.view["instructions"] = fields["instructions"]
        voice = (session.get("audio") or {}).get("output", {}).get("voice") or session.get("voice")
        if isinstance(voice, str):
            self.view["voice"] = voice
        if "tools" in fields:
            self.view["tools"] = session.get("tools") or []
        if "modalities" in fields:
            self.view["modalities"] = fields["modalities"]
        if vad_off:
            self.view["turn_detection"] = None
        turn = (session.get("audio") or {}).get("input", {}).get("turn_detection", session.get("turn_detection"))
        if isinstance(turn, dict):
            self.view["turn_detection"] = {**ev.DEFAULT_VAD, **turn}
