"""Twilio Media Streams messages, as Twilio documents them (JSON text frames).

From Twilio: ``connected``, ``start`` (``start.streamSid``, ``start.callSid``,
``start.mediaFormat`` = audio/x-mulaw, 8000 Hz, 1 channel,
``start.customParameters``), ``media`` (``media.payload``: base64 μ-law),
``mark`` (``mark.name``, echoed once the audio sent before it has played),
``dtmf`` and ``stop``; every message but ``connected`` carries
``sequenceNumber`` and ``streamSid``. To Twilio: ``media``, ``mark`` and
``clear`` (drop the audio not played yet), each with the ``streamSid``.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field

ENCODING = "audio/x-mulaw"
RATE_HZ = 8000

# WebSocket close codes (RFC 6455) for what can go wrong with a stream.
NORMAL = 1000
UNSUPPORTED = 1003  # a binary frame, or audio in a format other than μ-law 8 kHz mono
INVALID_PAYLOAD = 1007  # not JSON, not an object, a payload that is not base64
POLICY = 1008  # messages out of order, a wrong stream token
FAILED = 1011  # the agent session failed (refused key, quota, mesh down)


class ProtocolError(Exception):
    """A message that breaks the protocol: the stream is closed with ``code`` and this reason."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason[:120]  # a close reason must fit in 123 bytes


@dataclass(frozen=True)
class Start:
    stream_sid: str
    call_sid: str
    parameters: dict[str, str] = field(default_factory=dict)


def parse(text: str | bytes | None) -> dict:
    """One message as a dict with a string ``event``."""
    if not isinstance(text, str):
        raise ProtocolError(UNSUPPORTED, "binary frames are not Media Streams messages; send JSON text")
    try:
        message = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(INVALID_PAYLOAD, f"message is not JSON: {exc.msg} at {exc.pos}") from None
    if not isinstance(message, dict) or not isinstance(message.get("event"), str):
        raise ProtocolError(INVALID_PAYLOAD, "message must be a JSON object with a string 'event'")
    return message


def _object(message: dict, key: str) -> dict:
    value = message.get(key)
    if not isinstance(value, dict):
        raise ProtocolError(INVALID_PAYLOAD, f"'{message['event']}' message has no '{key}' object")
    return value


def start(message: dict) -> Start:
    body = _object(message, "start")
    sid = body.get("streamSid") or message.get("streamSid")
    if not isinstance(sid, str) or not sid:
        raise ProtocolError(INVALID_PAYLOAD, "'start' message has no streamSid")
    media = body.get("mediaFormat")
    if not isinstance(media, dict) or (media.get("encoding"), media.get("sampleRate"), media.get("channels", 1)) != (
            ENCODING, RATE_HZ, 1):
        raise ProtocolError(UNSUPPORTED, f"mediaFormat must be {ENCODING} at {RATE_HZ} Hz mono, got {media!r}")
    parameters = body.get("customParameters") or {}
    if not isinstance(parameters, dict):
        raise ProtocolError(INVALID_PAYLOAD, "'start.customParameters' must be an object")
    return Start(stream_sid=sid, call_sid=str(body.get("callSid") or ""),
                 parameters={str(k): str(v) for k, v in parameters.items()})


def media_payload(message: dict) -> bytes:
    """The μ-law bytes of a ``media`` message."""
    payload = _object(message, "media").get("payload")
    if not isinstance(payload, str):
        raise ProtocolError(INVALID_PAYLOAD, "'media' message has no payload string")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(INVALID_PAYLOAD, "media.payload is not base64") from None


def mark_name(message: dict) -> str:
    name = _object(message, "mark").get("name")
    if not isinstance(name, str):
        raise ProtocolError(INVALID_PAYLOAD, "'mark' message has no name")
    return name


def media(stream_sid: str, mulaw: bytes) -> str:
    return json.dumps({"event": "media", "streamSid": stream_sid,
                       "media": {"payload": base64.b64encode(mulaw).decode("ascii")}})


def mark(stream_sid: str, name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear(stream_sid: str) -> str:
    return json.dumps({"event": "clear", "streamSid": stream_sid})
