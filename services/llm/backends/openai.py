"""Remote chat through an OpenAI-compatible ``/chat/completions`` API (``openai/<model>``).

Each generation is one streaming ``POST {base_url}/chat/completions``
(server-sent events, ``stream_options.include_usage``). Text deltas pass
through as they come; tool-call deltas are put together per index and sent
as complete calls when the stream ends. ``base_url`` and ``api_key`` are
resolved by ``voicemesh.targets`` (the operator's ``VOICEMESH_OPENAI_*`` /
``OPENAI_*``, or the stream's own on the allowlist). Any model name is
accepted: the remote decides what it serves.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

from voicemesh import remote
from voicemesh.backend import ModelCard
from voicemesh.errors import Unavailable
from voicemesh.services.llm.backend import (
    CancelToken,
    Done,
    FinishReason,
    GenerationRequest,
    LlmBackend,
    LlmEvent,
    LlmSettings,
    Message,
    TextDelta,
    TokenUsage,
    ToolCall,
    ToolCallMade,
)
from voicemesh.tools import new_call_id

log = logging.getLogger(__name__)

# A few well-known models for Describe; any other name is passed to the remote as is.
KNOWN_MODELS = {"gpt-4.1-mini": 1_047_576, "gpt-4.1-nano": 1_047_576, "gpt-4o-mini": 128_000}
_FINISH = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH, "tool_calls": FinishReason.TOOL_CALLS,
           "function_call": FinishReason.TOOL_CALLS}


@dataclass
class _Reply:
    """What the stream told us so far."""

    reason: FinishReason = FinishReason.STOP
    usage: TokenUsage = TokenUsage()
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class OpenAILlmSettings(remote.RemoteSettings, LlmSettings):
    """A remote chat model takes the remote timeout and the generation limit of every LLM backend."""


class OpenAILlmBackend(remote.RemoteBackend, LlmBackend):
    """Chat with any server that implements OpenAI's streaming ``POST /chat/completions``."""

    provider = "openai"
    settings_type = OpenAILlmSettings
    settings: OpenAILlmSettings
    # Models Describe lists (name -> context tokens, 0 when unknown); presets of other providers set their own.
    known_models: ClassVar[dict[str, int]] = KNOWN_MODELS

    @classmethod
    def catalog(cls, settings: OpenAILlmSettings) -> list[ModelCard]:
        return [
            ModelCard(
                descriptor=f"{cls.provider}/{model}",
                context_tokens=context,
                capabilities={"streaming": True, "tool_calls": True},
                description=f"remote OpenAI-compatible /chat/completions at {cls.default_base_url} "
                            "(any model name the remote serves)",
            )
            for model, context in cls.known_models.items()
        ]

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.context_tokens = self.known_models.get(self.model, 0)

    async def generate(
        self, request: GenerationRequest, *, session: object, cancel: CancelToken
    ) -> AsyncIterator[LlmEvent]:
        self.http_client()  # UNAVAILABLE once closed, before a slot is taken
        ticket = await self.slot(cancel)
        if ticket is None:
            yield Done(FinishReason.CANCELLED, TokenUsage())
            return
        reply = _Reply()
        try:
            async for event in self._events(request, cancel, reply):
                yield event
        finally:
            ticket.release()  # before Done, so the slot is free when the client hears of it
        yield Done(reply.reason, reply.usage)

    async def _events(self, request: GenerationRequest, cancel: CancelToken, reply: _Reply) -> AsyncIterator[LlmEvent]:
        url = f"{self.options.base_url}/chat/completions"
        cancelled = asyncio.ensure_future(cancel.wait())
        response: httpx.Response | None = None
        try:
            client = self.http_client()
            sent = remote.send(client, client.build_request("POST", url, json=self._body(request)),
                               endpoint="/chat/completions", model=self.descriptor)
            finished, response = await _unless_cancelled(sent, cancelled)
            if not finished:
                reply.reason = FinishReason.CANCELLED
                return
            lines = response.aiter_lines()
            while True:
                finished, line = await _unless_cancelled(anext(lines, None), cancelled)
                if not finished:
                    reply.reason = FinishReason.CANCELLED
                    return  # closing the response drops the connection, which stops the remote
                if line is None or line.strip() == "data: [DONE]":
                    break
                if line.startswith("data:"):
                    for event in _chunk_events(json.loads(line[5:]), reply, self.descriptor):
                        yield event
        except httpx.HTTPError as exc:
            raise remote.transport_error(exc, url=url, timeout_s=self.options.timeout_s, model=self.descriptor) from None
        except json.JSONDecodeError as exc:
            log.warning("%s sent a malformed event: %s", url, exc)
            raise Unavailable(f"{url} sent a malformed event", model=self.descriptor) from None
        finally:
            cancelled.cancel()
            if response is not None:
                await response.aclose()
        for index in sorted(reply.calls):
            call = reply.calls[index]
            arguments = _normalized("".join(call["arguments"]))
            yield ToolCallMade(ToolCall(call["id"] or new_call_id(), call["name"], arguments))
        if reply.calls:
            reply.reason = FinishReason.TOOL_CALLS

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [_wire_message(m) for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        sampling = request.sampling
        for key, value in (("temperature", sampling.temperature), ("top_p", sampling.top_p),
                           ("max_tokens", sampling.max_tokens), ("seed", sampling.seed)):
            if value is not None:
                body[key] = value
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if request.tools:
            body["tools"] = [
                {"type": "function",
                 "function": {"name": t.name, "description": t.description, "parameters": dict(t.parameters)}}
                for t in request.tools
            ]
            choice = request.tool_choice
            body["tool_choice"] = (
                {"type": "function", "function": {"name": choice.name}} if choice.mode == "function" else choice.mode
            )
        return body


async def _unless_cancelled(awaitable: Any, cancelled: asyncio.Future) -> tuple[bool, Any]:
    """(True, result) of ``awaitable``, or (False, None) when ``cancelled`` completes first."""
    task = asyncio.ensure_future(awaitable)
    try:
        await asyncio.wait({task, cancelled}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        return False, None
    return True, task.result()


def _normalized(arguments: str) -> str:
    """Arguments as strict JSON when the remote's text parses leniently (llama.cpp's
    grammar lets raw control characters into strings); otherwise as sent."""
    try:
        return json.dumps(json.loads(arguments, strict=False))
    except json.JSONDecodeError:
        return arguments


def _wire_message(message: Message) -> dict[str, Any]:
    wire: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        wire["content"] = message.content or None
        wire["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json or "{}"}}
            for c in message.tool_calls
        ]
    if message.tool_call_id:
        wire["tool_call_id"] = message.tool_call_id
    return wire


def _chunk_events(chunk: Any, reply: _Reply, model: str) -> list[LlmEvent]:
    """Text deltas of one streamed chunk; tool-call deltas, finish reason and usage go to ``reply``."""
    if not isinstance(chunk, dict):
        log.warning("%s: the remote sent a chunk that is not an object: %r", model, str(chunk)[:200])
        raise Unavailable("the remote sent a chunk that is not an object", model=model)
    if "error" in chunk:
        # What a remote writes is logged for the operator, not relayed to the client.
        log.warning("%s: the remote reported an error mid-stream: %s", model, json.dumps(chunk["error"])[:300])
        raise Unavailable("the remote reported an error mid-stream", model=model)
    if usage := chunk.get("usage"):
        details = usage.get("prompt_tokens_details") or {}
        reply.usage = TokenUsage(
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            cached_tokens=int(details.get("cached_tokens") or 0),
        )
    events: list[LlmEvent] = []
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if content := delta.get("content"):
            events.append(TextDelta(content))
        for part in delta.get("tool_calls") or ():
            call = reply.calls.setdefault(int(part.get("index", 0)), {"id": "", "name": "", "arguments": []})
            call["id"] = part.get("id") or call["id"]
            function = part.get("function") or {}
            call["name"] = function.get("name") or call["name"]
            call["arguments"].append(function.get("arguments") or "")
        if reason := choice.get("finish_reason"):
            reply.reason = _FINISH.get(reason, FinishReason.STOP)
    return events
