"""OpenAI Realtime events <-> RealtimeService.Converse messages, as plain translation.

``client_requests`` turns one client event (JSON) into Converse requests, or raises
``InvalidInput`` for an event the session should answer with an ``error`` event and stay open.
``ServerEvents`` turns each Converse response into the OpenAI server events it stands for,
GA names by default and beta names (``OpenAI-Beta: realtime=v1``) on request, with the
``item_id``/``response_id``/indexes and the ``*.done`` events OpenAI sends.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid

from voicemesh.errors import InvalidInput
from voicemesh.v1 import llm_pb2, realtime_pb2

RATE_HZ = 24000  # audio/pcm (pcm16) in and out, as OpenAI's default
CHUNK_BYTES = RATE_HZ * 2 // 10  # appended audio goes to the service in 100 ms pieces
GA = {"audio": "response.output_audio", "transcript": "response.output_audio_transcript",
      "text": "response.output_text"}
BETA = {"audio": "response.audio", "transcript": "response.audio_transcript", "text": "response.text"}
DEFAULT_VAD = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500,
               "create_response": True, "interrupt_response": True}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def _vad(value) -> realtime_pb2.ServerVad | None:
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type", "server_vad") != "server_vad":
        raise InvalidInput("turn_detection: only {'type': 'server_vad', ...} or null is supported",
                           reason="session.turn_detection")
    return realtime_pb2.ServerVad(threshold=float(value.get("threshold") or 0),
                                  prefix_padding_ms=int(value.get("prefix_padding_ms") or 0),
                                  silence_duration_ms=int(value.get("silence_duration_ms") or 0),
                                  create_response=bool(value.get("create_response", True)),
                                  interrupt_response=bool(value.get("interrupt_response", True)))


def _check_format(value, where: str) -> None:
    kind = value.get("type") if isinstance(value, dict) else value
    rate = value.get("rate", RATE_HZ) if isinstance(value, dict) else RATE_HZ
    if kind not in (None, "audio/pcm", "pcm16") or rate != RATE_HZ:
        raise InvalidInput(f"{where}: only audio/pcm (pcm16) at 24000 Hz is supported", reason=where)


def session_fields(session: dict, voices) -> tuple[dict, bool]:
    """A session.update's ``session`` (GA or beta shape) as RealtimeSessionConfig fields, and whether
    it turns server VAD off. ``voices(name)`` maps an OpenAI voice name to the mesh's."""
    if not isinstance(session, dict):
        raise InvalidInput("session.update needs a 'session' object", reason="session")
    audio = session.get("audio") if isinstance(session.get("audio"), dict) else {}
    audio_in = audio.get("input") if isinstance(audio.get("input"), dict) else {}
    audio_out = audio.get("output") if isinstance(audio.get("output"), dict) else {}
    for where, value in (("session.audio.input.format", audio_in.get("format")),
                         ("session.audio.output.format", audio_out.get("format")),
                         ("session.input_audio_format", session.get("input_audio_format")),
                         ("session.output_audio_format", session.get("output_audio_format"))):
        if value is not None:
            _check_format(value, where)
    fields: dict = {}
    if isinstance(session.get("instructions"), str):
        fields["instructions"] = session["instructions"]
    voice = audio_out.get("voice") or session.get("voice")
    if isinstance(voice, str) and voices(voice):
        fields["voice"] = voices(voice)
    modalities = session.get("output_modalities") or session.get("modalities")
    if modalities is not None:
        if not isinstance(modalities, list) or not set(modalities) <= {"text", "audio"}:
            raise InvalidInput("modalities may hold 'text' and 'audio'", reason="session.output_modalities")
        fields["modalities"] = ["text"] if modalities == ["text"] else ["text", "audio"]
    if "tools" in session:
        fields["tools"] = [_tool(t, i) for i, t in enumerate(session.get("tools") or [])]
    vad_off = False
    for holder in (audio_in, session):
        if "turn_detection" in holder:
            vad = _vad(holder["turn_detection"])
            vad_off = vad is None
            if vad is not None:
                fields["turn_detection"] = vad
    return fields, vad_off


def _tool(tool, index: int) -> llm_pb2.Tool:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(
            tool.get("name"), str):
        raise InvalidInput(f"tools[{index}] must be {{'type': 'function', 'name': ..., 'parameters': {{...}}}}",
                           reason="session.tools")
    return llm_pb2.Tool(name=tool["name"], description=tool.get("description") or "",
                        parameters_json=json.dumps(tool.get("parameters") or {"type": "object", "properties": {}}))


def _text_of(content) -> str:
    parts = content if isinstance(content, list) else []
    return "".join(str(p.get("text") or p.get("transcript") or "") for p in parts if isinstance(p, dict))


def chat_item(item) -> llm_pb2.ChatMessage:
    """A conversation.item.create item as a chat message."""
    if not isinstance(item, dict):
        raise InvalidInput("conversation.item.create needs an 'item' object", reason="item")
    kind = item.get("type", "message")
    if kind == "message":
        if item.get("role") not in ("user", "assistant", "system"):
            raise InvalidInput("item.role must be user, assistant or system", reason="item.role")
        return llm_pb2.ChatMessage(role=item["role"], content=_text_of(item.get("content")))
    if kind == "function_call_output":
        if not item.get("call_id"):
            raise InvalidInput("a function_call_output item needs call_id", reason="item.call_id")
        return llm_pb2.ChatMessage(role="tool", tool_call_id=item["call_id"], content=str(item.get("output") or ""))
    if kind == "function_call":
        call = llm_pb2.ToolCall(id=str(item.get("call_id") or ""), name=str(item.get("name") or ""),
                                arguments_json=str(item.get("arguments") or "{}"))
        return llm_pb2.ChatMessage(role="assistant", tool_calls=[call])
    raise InvalidInput(f"item.type {kind!r} is not supported", reason="item.type")


def audio_chunks(event: dict) -> list[bytes]:
    try:
        audio = base64.b64decode(event.get("audio") or "", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("input_audio_buffer.append: 'audio' is not base64", reason="audio") from None
    if len(audio) % 2:
        raise InvalidInput("input_audio_buffer.append: pcm16 audio needs an even byte count", reason="audio")
    return [audio[i:i + CHUNK_BYTES] for i in range(0, len(audio), CHUNK_BYTES)]


class ServerEvents:
    """Converse responses as OpenAI Realtime server events, for one session."""

    def __init__(self, *, beta: bool):
        self.beta = beta
        self.names = BETA if beta else GA
        self.announced: set[str] = set()  # input items whose "created" went out
        self.last_item = None
        self.responses: dict[str, dict] = {}
        self.metadata: list = []  # of response.create events not yet answered, echoed in response.created

    def event(self, kind: str, **fields) -> dict:
        return {"type": kind, "event_id": new_id("event"), **fields}

    def item_created(self, item: dict) -> list[dict]:
        previous, self.last_item = self.last_item, item["id"]
        if self.beta:
            return [self.event("conversation.item.created", previous_item_id=previous, item=item)]
        return [self.event("conversation.item.added", previous_item_id=previous, item=item),
                self.event("conversation.item.done", previous_item_id=previous, item=item)]

    def _input_item(self, item_id: str, committed: bool) -> list[dict]:
        if item_id in self.announced or not item_id:
            return []
        self.announced.add(item_id)
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user", "status": "completed",
                "content": [{"type": "input_audio", "transcript": None}]}
        out = [self.event("input_audio_buffer.committed", previous_item_id=self.last_item, item_id=item_id)]
        return (out if committed else []) + self.item_created(item)

    def translate(self, response: realtime_pb2.ConverseResponse) -> list[dict]:
        kind = response.WhichOneof("event")
        value = getattr(response, kind)
        if kind == "speech_started":
            return [self.event("input_audio_buffer.speech_started", audio_start_ms=value.audio_ms,
                               item_id=value.item_id)]
        if kind == "speech_stopped":
            return [self.event("input_audio_buffer.speech_stopped", audio_end_ms=value.audio_ms,
                               item_id=value.item_id), *self._input_item(value.item_id, True)]
        if kind == "input_transcription":
            name = "conversation.item.input_audio_transcription." + ("completed" if value.final else "delta")
            text = {"transcript": value.text} if value.final else {"delta": value.text}
            created = self._input_item(value.item_id, True) if value.final else []
            return [*created, self.event(name, item_id=value.item_id, content_index=0, **text)]
        if kind == "response_created":
            return self._created(value)
        if kind in ("text_delta", "audio_delta"):
            return self._delta(kind, value)
        if kind == "response_done":
            return self._done(value)
        if kind == "item_truncated":
            return [self.event("conversation.item.truncated", item_id=value.item_id, content_index=0,
                               audio_end_ms=value.audio_end_ms)]
        if kind == "item_deleted":
            return [self.event("conversation.item.deleted", item_id=value.item_id)]
        if kind == "error":  # the backend's reason is OpenAI's code where it has one (upper-cased)
            return [error_event(value.message, value.detail.reason.lower() or value.code.lower() or "server_error")]
        return []  # session_updated: answered by the bridge, which knows the whole session

    def _created(self, value: realtime_pb2.ResponseCreated) -> list[dict]:
        state = {"id": value.response_id, "item_id": value.item_id, "transcript": "", "text": "", "audio": False}
        self.responses[value.response_id] = state
        response = {"id": value.response_id, "object": "realtime.response", "status": "in_progress", "output": [],
                    "metadata": self.metadata.pop(0) if self.metadata else None}
        item = {"id": value.item_id, "object": "realtime.item", "type": "message", "role": "assistant",
                "status": "in_progress", "content": []}
        return [self.event("response.created", response=response),
                self.event("response.output_item.added", response_id=value.response_id, output_index=0, item=item),
                *self.item_created(item)]

    def _delta(self, kind: str, value) -> list[dict]:
        state = self.responses.get(value.response_id)
        if state is None:
            return []
        out = []
        ids = {"response_id": value.response_id, "item_id": value.item_id, "output_index": 0, "content_index": 0}
        part_kind = "audio" if kind == "audio_delta" or value.audio_transcript else "text"
        if "part" not in state:
            state["part"] = part_kind
            part = {"type": "audio", "transcript": ""} if part_kind == "audio" else {"type": "text", "text": ""}
            out.append(self.event("response.content_part.added", **ids, part=part))
        if kind == "audio_delta":
            state["audio"] = True
            out.append(self.event(self.names["audio"] + ".delta", **ids,
                                  delta=base64.b64encode(value.audio).decode()))
        elif value.audio_transcript:
            state["transcript"] += value.delta
            out.append(self.event(self.names["transcript"] + ".delta", **ids, delta=value.delta))
        else:
            state["text"] += value.delta
            out.append(self.event(self.names["text"] + ".delta", **ids, delta=value.delta))
        return out

    def _done(self, value: realtime_pb2.ResponseDone) -> list[dict]:
        state = self.responses.pop(value.response_id, None) or {"item_id": "", "transcript": "", "text": ""}
        ids = {"response_id": value.response_id, "item_id": state["item_id"], "output_index": 0, "content_index": 0}
        out, output = [], []
        if "part" in state:
            if state["part"] == "audio":
                if state.get("audio"):
                    out.append(self.event(self.names["audio"] + ".done", **ids))
                out.append(self.event(self.names["transcript"] + ".done", **ids, transcript=state["transcript"]))
                part = {"type": "audio", "transcript": state["transcript"]}
            else:
                out.append(self.event(self.names["text"] + ".done", **ids, text=state["text"]))
                part = {"type": "text", "text": state["text"]}
            out.append(self.event("response.content_part.done", **ids, part=part))
            item = {"id": state["item_id"], "object": "realtime.item", "type": "message", "role": "assistant",
                    "status": "completed" if value.status == "completed" else "incomplete", "content": [part]}
            out.append(self.event("response.output_item.done", response_id=value.response_id, output_index=0,
                                  item=item))
            output.append(item)
        for index, call in enumerate(value.tool_calls, start=len(output)):
            item = {"id": new_id("item"), "object": "realtime.item", "type": "function_call", "status": "completed",
                    "name": call.name, "call_id": call.id, "arguments": call.arguments_json}
            out += [self.event("response.output_item.added", response_id=value.response_id, output_index=index,
                               item={**item, "arguments": "", "status": "in_progress"}),
                    self.event("response.function_call_arguments.done", response_id=value.response_id,
                               item_id=item["id"], output_index=index, call_id=call.id, name=call.name,
                               arguments=call.arguments_json),
                    self.event("response.output_item.done", response_id=value.response_id, output_index=index,
                               item=item)]
            output.append(item)
        usage = value.usage
        response = {"id": value.response_id, "object": "realtime.response", "status": value.status or "completed",
                    "output": output,
                    "usage": {"total_tokens": usage.input_tokens + usage.output_tokens,
                              "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                              "input_token_details": {"cached_tokens": usage.cached_tokens},
                              "output_token_details": {}}}
        return [*out, self.event("response.done", response=response)]


def error_event(message: str, code: str = "invalid_request_error", param: str | None = None,
                event_id: str | None = None, kind: str = "invalid_request_error") -> dict:
    return {"type": "error", "event_id": new_id("event"),
            "error": {"type": kind, "code": code, "message": message, "param": param, "event_id": event_id}}
