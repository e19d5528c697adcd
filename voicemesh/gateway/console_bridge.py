"""``/console/session``: one ``AgentService.Session`` per WebSocket, for browsers (the wire format is in docs/console.md).

Text frames are JSON control messages, binary frames are PCM s16le mono. The bridge is a translator: it
drives the SDK's ``AgentSession`` (voicemesh.client.session) and turns its typed events into JSON, and
the orchestrator keeps every rule of the session (keys, metering, quotas, barge-in).

The key comes from ``Authorization: Bearer`` or, since a browser cannot set headers on a WebSocket, the
subprotocol ``voicemesh-key.<key>``; the mesh checks it (``KeyCheck``, as for every gateway route) before
any session starts, and a browser's ``Origin`` must be the gateway itself or one of ``--cors-origins``. A browser cannot read an HTTP refusal of its upgrade, so a refused key is answered
on the accepted socket: an ``error`` message, then close code 1008 with the reason. A frame the bridge
cannot take gets an ``error`` message and the socket stays open; a session that fails ends with an
``error`` (``fatal: true``) and ``session_ended``, and the socket can start another one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.websockets import WebSocket, WebSocketDisconnect

from voicemesh.client.events import AgentAudio, AgentVideo, Event
from voicemesh.client.session import AgentSession, AgentSessionError, Avatar, Interruption, Tool, TurnDetection
from voicemesh.errors import InvalidInput, VoiceMeshError
from voicemesh.gateway import console_describe, console_usage
from voicemesh.gateway.limits import Refused

if TYPE_CHECKING:
    from voicemesh.gateway.app import Gateway

log = logging.getLogger(__name__)

PROTOCOL = "voicemesh.console"
KEY_PROTOCOL = "voicemesh-key."
# One second of 48 kHz audio: a browser sends 20-100 ms chunks, so a bigger frame is a client bug.
MAX_AUDIO_FRAME = 48000
MAX_TEXT_FRAME = 64 * 1024
SESSION_MESSAGES = ("text", "update_models", "interrupt", "say", "tool_result", "end_input")
KEYED = ("llm", "realtime", "stt", "tts")  # the first of these the mesh routes checks the key


def authorization_of(websocket: WebSocket) -> tuple[str, list[str]]:
    """The ``Authorization`` value (header, else the key subprotocol) and the offered subprotocols."""
    protocols = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    authorization = websocket.headers.get("authorization", "")
    for protocol in protocols:
        if protocol.startswith(KEY_PROTOCOL) and len(protocol) > len(KEY_PROTOCOL):
            authorization = f"Bearer {protocol[len(KEY_PROTOCOL):]}"
    return authorization, protocols


def origin_allowed(websocket: WebSocket, cors_origins: tuple[str, ...]) -> bool:
    """A browser says which page opened the socket: the gateway's own page, or an origin the operator allowed
    (``--cors-origins``). Without this, any web site the user visits could talk to a mesh that has auth off."""
    origin = websocket.headers.get("origin")
    if origin is None:  # not a browser
        return True
    if "*" in cors_origins or origin in cors_origins:
        return True
    return urlsplit(origin).netloc == websocket.headers.get("host", "")


async def console_session(gateway: Gateway, websocket: WebSocket) -> None:
    authorization, protocols = authorization_of(websocket)
    await websocket.accept(subprotocol=PROTOCOL if PROTOCOL in protocols else None)
    if not origin_allowed(websocket, gateway.cors_origins):
        await _refuse(websocket, "PERMISSION_DENIED", f"the origin {websocket.headers['origin']} may not open "
                      "console sessions on this gateway (serve the page from it, or add the origin to --cors-origins)")
        return
    try:
        modality = next((m for m in KEYED if m in gateway.mesh.routes), None)
        if modality is not None:
            await gateway.keys.check(modality, authorization)
    except Refused as exc:
        code = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 429: "RESOURCE_EXHAUSTED"}.get(exc.status,
                                                                                               "UNAVAILABLE")
        await _refuse(websocket, code,
                      f"the mesh refused the API key: {json.loads(exc.response().body)['error']['message']}")
        return
    await ConsoleBridge(gateway, websocket, authorization).run()


async def _refuse(websocket: WebSocket, code: str, message: str) -> None:
    """A fatal error message, then close code 1008 with the same reason (what a browser can read of a refusal)."""
    await websocket.send_text(json.dumps({"type": "error", "fatal": True, "code": code, "message": message}))
    await websocket.close(code=1008, reason=message[:120])


class ConsoleBridge:
    """One socket: control messages and audio in, session events out."""

    def __init__(self, gateway: Gateway, websocket: WebSocket, authorization: str):
        self.gateway, self.websocket = gateway, websocket
        self.authorization = authorization
        # An empty key, not None: the SDK would otherwise send the gateway's own local key.
        self.api_key = authorization.removeprefix("Bearer ").strip()
        self.session: AgentSession | None = None
        self.pump: asyncio.Task | None = None
        self.send_lock = asyncio.Lock()

    async def send(self, message: dict, payload: bytes | None = None) -> None:
        """One JSON message (and the binary frame that belongs to it, never split by another message)."""
        async with self.send_lock:
            await self.websocket.send_text(json.dumps(message))
            if payload is not None:
                await self.websocket.send_bytes(payload)

    async def error(self, code: str, message: str, **extra: Any) -> None:
        await self.send({"type": "error", "code": code, "message": message, **extra})

    async def run(self) -> None:
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                try:
                    if message.get("bytes") is not None:
                        await self._audio(message["bytes"])
                    else:
                        await self._control(message.get("text") or "")
                except VoiceMeshError as exc:  # InvalidInput for a bad frame; a ledger's refusal of the key
                    await self.error(exc.code, exc.message)
                except AgentSessionError as exc:
                    await self.error(exc.code, exc.message, reason=exc.reason)
        except WebSocketDisconnect:
            return
        finally:
            await self._stop()

    async def _audio(self, pcm: bytes) -> None:
        if self.session is None:
            raise InvalidInput("audio before a session: send {\"type\": \"start\"} first")
        if len(pcm) % 2 or len(pcm) > MAX_AUDIO_FRAME * 2:
            raise InvalidInput(f"an audio frame is PCM s16le (an even number of bytes, at most "
                               f"{MAX_AUDIO_FRAME * 2}); got {len(pcm)} bytes")
        await self.session.send_audio(pcm)

    async def _control(self, text: str) -> None:
        if len(text) > MAX_TEXT_FRAME:
            raise InvalidInput(f"a control message is at most {MAX_TEXT_FRAME} bytes")
        try:
            message = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"a text frame is a JSON control message: {exc}") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise InvalidInput("a control message is a JSON object with a string 'type'")
        kind = message["type"]
        if kind == "start":
            await self._start(message)
            return
        if kind == "describe":
            await self.send({"type": "models", **await console_describe.models(self.gateway, self.authorization)})
            return
        if kind == "usage":
            await self.send(await console_usage.key_usage(self.authorization))
            return
        if kind == "stop":
            await self._stop()
            return
        if kind not in SESSION_MESSAGES:
            raise InvalidInput(f"unknown control message type {kind!r}; known: start, stop, describe, usage, "
                               f"{', '.join(SESSION_MESSAGES)}")
        session = self.session
        if session is None:
            raise InvalidInput(f"{kind!r} before a session: send {{\"type\": \"start\"}} first")
        if kind == "text":
            await session.send_text(_string(message, "text", required=True))
        elif kind == "update_models":
            choices = {name: _choice(message, name) for name in ("stt", "llm", "tts", "realtime")}
            await session.update_models(**choices, instructions=_string(message, "instructions"))
        elif kind == "interrupt":
            await session.interrupt()
        elif kind == "say":
            await session.say(_string(message, "text", required=True),
                              add_to_history=bool(message.get("add_to_history", True)))
        elif kind == "tool_result":
            await session.send_tool_result(_string(message, "call_id", required=True), message.get("output", ""))
        elif kind == "end_input":
            await session.end_input()

    async def _start(self, message: dict) -> None:
        if self.session is not None:
            raise InvalidInput("a session is already running on this socket: send {\"type\": \"stop\"} first")
        session = AgentSession(**session_options(message), address=self.gateway.orchestrator,
                               api_key=self.api_key)
        session_id = await session.start()  # AgentSessionError reaches the client as an error message
        self.session = session
        self.pump = asyncio.ensure_future(self._pump(session))
        await self.send({"type": "session_started", "session_id": session_id})

    async def _pump(self, session: AgentSession) -> None:
        ended: dict[str, Any] = {"type": "session_ended"}
        try:
            async for event in session:
                message, payload = event_message(event)
                await self.send(message, payload)
        except AgentSessionError as exc:
            ended["code"], ended["message"] = exc.code, exc.message
            with contextlib.suppress(Exception):
                await self.error(exc.code, exc.message, reason=exc.reason, fatal=True)
        finally:
            if self.session is session:
                self.session, self.pump = None, None
                await session.aclose()
                with contextlib.suppress(Exception):
                    await self.send(ended)

    async def _stop(self) -> None:
        session, pump = self.session, self.pump
        self.session, self.pump = None, None
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
        if session is not None:
            await session.aclose()
            with contextlib.suppress(Exception):
                await self.send({"type": "session_ended"})


def event_message(event: Event) -> tuple[dict, bytes | None]:
    """The JSON message of a session event, and the binary frame that follows it (audio, a video frame)."""
    fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    payload = None
    if isinstance(event, AgentAudio):
        payload = fields.pop("audio")
        fields["bytes"] = len(payload)
    elif isinstance(event, AgentVideo):
        payload = fields.pop("data")
        fields["bytes"] = len(payload)
    return {key: _plain(value) for key, value in fields.items()}, payload


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value if isinstance(value.value, str) else value.name.lower()
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return list(value)
    return value


def _string(message: dict, name: str, *, required: bool = False) -> str:
    value = message.get(name, "")
    if not isinstance(value, str) or (required and not value):
        raise InvalidInput(f"{message['type']}: '{name}' must be a{' non-empty' if required else ''} string")
    return value


def _choice(message: dict, name: str) -> str | list[str] | None:
    """A model choice: a descriptor, or a fallback list of them; absent or empty keeps the current one."""
    value = message.get(name)
    if value in (None, "", []):
        return None
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) and v for v in value)):
        return value
    raise InvalidInput(f"{message['type']}: '{name}' must be a model descriptor or a list of them")


def _number(message: dict, name: str) -> int:
    value = message.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"start: '{name}' must be a whole number >= 0")
    return value


def session_options(message: dict) -> dict[str, Any]:
    """``AgentSession`` keyword arguments from a ``start`` message (InvalidInput for a bad field)."""
    options: dict[str, Any] = {"instructions": _string(message, "instructions")}
    realtime = _choice(message, "realtime")
    if realtime is not None:
        options.update(realtime=realtime, stt=None, llm=None, tts=None)
    else:
        options.update({name: choice for name in ("stt", "llm", "tts")
                        if (choice := _choice(message, name)) is not None})
    for name in ("input_sample_rate", "output_sample_rate", "first_result_timeout_ms"):
        if name in message:
            options[name] = _number(message, name)
    if options.get("input_sample_rate") == 0:
        raise InvalidInput("start: 'input_sample_rate' must be the rate of the PCM you send, in Hz")
    avatar = _choice(message, "avatar")
    if isinstance(avatar, list):
        raise InvalidInput("start: 'avatar' is one avatar descriptor")
    if avatar is not None:  # JPEG frames: what a browser shows without a decoder
        options["avatar"] = Avatar(avatar, encoding="jpeg")
    turn = message.get("turn_detection") or {}
    interruption = message.get("interruption") or {}
    tools = message.get("tools") or []
    if not isinstance(turn, dict) or not isinstance(interruption, dict) or not isinstance(tools, list):
        raise InvalidInput("start: turn_detection and interruption are objects, tools a list")
    if turn:
        options["turn_detection"] = TurnDetection(_number(turn, "min_endpointing_delay_ms"),
                                                  _number(turn, "max_endpointing_delay_ms"))
    if interruption:
        enabled = interruption.get("enabled")
        options["interruption"] = Interruption(enabled if isinstance(enabled, bool) else None,
                                               _number(interruption, "min_duration_ms"),
                                               _number(interruption, "false_interruption_timeout_ms"))
    try:
        options["tools"] = [Tool(t["name"], t.get("description", ""), t.get("parameters")) for t in tools]
    except (TypeError, KeyError):
        raise InvalidInput("start: each tool is {\"name\", \"description\", \"parameters\"}") from None
    return options
