"""Translation between OpenAI API JSON bodies and VoiceMesh protobuf messages.

Pure functions: they validate a request body and raise ``InvalidInput`` with
the offending parameter named, or shape responses the way the OpenAI API
documents them (chat completions, chunks, transcriptions, errors).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import grpc

from voicemesh.errors import InvalidInput
from voicemesh.v1 import llm_pb2

# gRPC status -> (HTTP status, OpenAI error type)
HTTP_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error"),
    grpc.StatusCode.FAILED_PRECONDITION: (400, "invalid_request_error"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "invalid_request_error"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "authentication_error"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_error"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_error"),
    grpc.StatusCode.UNAVAILABLE: (503, "server_error"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "timeout_error"),
    grpc.StatusCode.CANCELLED: (499, "server_error"),
}

FINISH_REASONS = {
    llm_pb2.FINISH_REASON_STOP: "stop",
    llm_pb2.FINISH_REASON_LENGTH: "length",
    llm_pb2.FINISH_REASON_TOOL_CALLS: "tool_calls",
    llm_pb2.FINISH_REASON_CANCELLED: "stop",
}


def error_body(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict:
    """The OpenAI error object."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def http_error(code: grpc.StatusCode) -> tuple[int, str]:
    """HTTP status and OpenAI error type of a gRPC status code."""
    return HTTP_ERRORS.get(code, (500, "server_error"))


def require(body: dict, name: str, kind: type | tuple[type, ...]) -> Any:
    """A required field of ``body`` of type ``kind``."""
    if name not in body or body[name] is None:
        raise InvalidInput(f"missing required parameter: '{name}'", reason=name)
    value = body[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise InvalidInput(f"'{name}' has the wrong type: {type(value).__name__}", reason=name)
    return value


def optional(body: dict, name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    """An optional field of ``body`` of type ``kind`` (``default`` when absent or null)."""
    if body.get(name) is None:
        return default
    return require(body, name, kind)


def _text_content(content: Any, index: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise InvalidInput(f"messages[{index}].content: only text parts are supported", reason="messages")
            parts.append(part["text"])
        return "".join(parts)
    raise InvalidInput(f"messages[{index}].content must be a string or a list of text parts", reason="messages")


def chat_message(message: Any, index: int) -> llm_pb2.ChatMessage:
    """One OpenAI chat message as a ChatMessage (roles are checked by the LLM service)."""
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise InvalidInput(f"messages[{index}] must be an object with a string 'role'", reason="messages")
    out = llm_pb2.ChatMessage(
        role="system" if message["role"] == "developer" else message["role"],
        content=_text_content(message.get("content"), index),
        tool_call_id=message.get("tool_call_id") or "",
    )
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidInput(f"messages[{index}].tool_calls: each needs function.name", reason="messages")
        out.tool_calls.add(id=call.get("id", ""), name=function["name"], arguments_json=function.get("arguments", "{}"))
    return out


def tools(body: dict) -> list[llm_pb2.Tool]:
    """The ``tools`` of a chat request (function tools only)."""
    out = []
    for index, tool in enumerate(optional(body, "tools", list, [])):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            raise InvalidInput(f"tools[{index}] must be {{'type': 'function', 'function': {{...}}}}", reason="tools")
        if not isinstance(function.get("name"), str):
            raise InvalidInput(f"tools[{index}].function.name is required", reason="tools")
        out.append(
            llm_pb2.Tool(
                name=function["name"],
                description=function.get("description") or "",
                parameters_json=json.dumps(function.get("parameters") or {"type": "object", "properties": {}}),
            )
        )
    return out


def tool_choice(body: dict) -> llm_pb2.ToolChoice:
    """The ``tool_choice`` of a chat request."""
    choice = body.get("tool_choice")
    if choice is None:
        return llm_pb2.ToolChoice(mode="auto")
    if choice in ("auto", "none", "required"):
        return llm_pb2.ToolChoice(mode=choice)
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("function"), dict):
        return llm_pb2.ToolChoice(mode="function", name=str(choice["function"].get("name", "")))
    raise InvalidInput("tool_choice must be 'auto', 'none', 'required' or a named function", reason="tool_choice")


def sampling(body: dict) -> llm_pb2.Sampling:
    """Sampling parameters of a chat request."""
    out = llm_pb2.Sampling()
    temperature = optional(body, "temperature", (int, float))
    if temperature is not None:
        if not 0 <= temperature <= 2:
            raise InvalidInput("temperature must be between 0 and 2", reason="temperature")
        out.temperature = temperature
    top_p = optional(body, "top_p", (int, float))
    if top_p is not None:
        out.top_p = top_p
    max_tokens = optional(body, "max_completion_tokens", int) or optional(body, "max_tokens", int)
    if max_tokens is not None:
        if max_tokens < 1:
            raise InvalidInput("max_tokens must be at least 1", reason="max_tokens")
        out.max_tokens = max_tokens
    stop = body.get("stop")
    if isinstance(stop, str):
        out.stop.append(stop)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        out.stop.extend(stop)
    elif stop is not None:
        raise InvalidInput("stop must be a string or a list of strings", reason="stop")
    seed = optional(body, "seed", int)
    if seed is not None:
        out.seed = seed
    return out


def generate_request(body: dict) -> llm_pb2.Generate:
    """The Generate message of a chat completion request (the whole conversation)."""
    messages = require(body, "messages", list)
    if not messages:
        raise InvalidInput("'messages' must contain at least one message", reason="messages")
    return llm_pb2.Generate(
        id="gateway",
        messages=[chat_message(m, i) for i, m in enumerate(messages)],
        replace_history=True,
        tools=tools(body),
        tool_choice=tool_choice(body),
        sampling=sampling(body),
    )


class Completion:
    """Builds chat.completion and chat.completion.chunk objects for one request."""

    def __init__(self, model: str):
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.model = model

    def _base(self, kind: str) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def chunk(self, delta: dict, finish_reason: str | None = None) -> dict:
        return {**self._base("chat.completion.chunk"),
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}

    def usage_chunk(self, usage: dict) -> dict:
        return {**self._base("chat.completion.chunk"), "choices": [], "usage": usage}

    def complete(self, text: str, calls: list[llm_pb2.ToolCall], finish_reason: str, usage: dict) -> dict:
        message: dict = {"role": "assistant", "content": text if text or not calls else None}
        if calls:
            message["tool_calls"] = [tool_call_json(c) for c in calls]
        return {**self._base("chat.completion"),
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
                "usage": usage}


def tool_call_json(call: llm_pb2.ToolCall, index: int | None = None) -> dict:
    out = {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments_json}}
    if index is not None:
        out["index"] = index
    return out


def usage_json(done: llm_pb2.ChatDone) -> dict:
    usage = done.usage
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


def sse(data: dict) -> str:
    """One server-sent event carrying ``data`` as JSON."""
    return f"data: {json.dumps(data)}\n\n"
