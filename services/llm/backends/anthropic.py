"""Remote chat through Anthropic's Messages API (``anthropic/<model>``).

Each generation is one streaming ``POST {base_url}/v1/messages`` with the key
in ``x-api-key`` and the ``anthropic-version`` header. The server-sent events
(``message_start``, ``content_block_start/delta/stop``, ``message_delta``,
``message_stop``, ``ping``, ``error``) become ``TextDelta`` events as they come
and one ``ToolCallMade`` per ``tool_use`` block once its ``input_json_delta``
pieces are complete. System messages go to the top-level ``system`` field, tool
results into ``tool_result`` blocks of a user turn. ``base_url`` and the key come
from ``voicemesh.targets`` (``VOICEMESH_ANTHROPIC_*``, then ``ANTHROPIC_API_KEY``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from voicemesh import remote
from voicemesh.backend import ModelCard
from voicemesh.errors import InvalidInput, PermissionDenied, ResourceExhausted, Unauthenticated, Unavailable
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
from voicemesh.services.llm.backends.openai import _unless_cancelled
from voicemesh.settings import setting
from voicemesh.tools import ToolChoice, new_call_id

log = logging.getLogger(__name__)

API_VERSION = "2023-06-01"
KNOWN_MODELS = {"claude-sonnet-4-5": 200_000, "claude-haiku-4-5": 200_000, "claude-3-5-haiku-latest": 200_000}
_FINISH = {"end_turn": FinishReason.STOP, "stop_sequence": FinishReason.STOP, "max_tokens": FinishReason.LENGTH,
           "tool_use": FinishReason.TOOL_CALLS}
# Error types of the API's error events; an HTTP error status maps through voicemesh.remote.
_ERRORS = {"authentication_error": Unauthenticated, "permission_error": PermissionDenied,
           "rate_limit_error": ResourceExhausted, "overloaded_error": ResourceExhausted,
           "invalid_request_error": InvalidInput, "request_too_large": InvalidInput}


@dataclass(frozen=True)
class AnthropicLlmSettings(remote.RemoteSettings, LlmSettings):
    """The Messages API requires ``max_tokens`` on every request; this is the one sent when a turn sets none."""

    anthropic_max_tokens: int = setting(1024, "max_tokens sent to the Anthropic Messages API when a turn sets none")


@dataclass
class _Reply:
    """What the stream told us so far."""

    reason: FinishReason = FinishReason.STOP
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    blocks: dict[int, dict[str, Any]] = field(default_factory=dict)  # tool_use blocks being streamed, by index
    calls: int = 0

    def usage(self) -> TokenUsage:
        return TokenUsage(self.input_tokens, self.output_tokens, self.cached_tokens)


class AnthropicLlmBackend(remote.RemoteBackend, LlmBackend):
    """Chat with Claude models over the streaming Messages API."""

    provider = "anthropic"
    default_base_url = "https://api.anthropic.com"
    key_env = ("ANTHROPIC_API_KEY",)
    settings_type = AnthropicLlmSettings
    settings: AnthropicLlmSettings

    @classmethod
    def catalog(cls, settings: AnthropicLlmSettings) -> list[ModelCard]:
        return [
            ModelCard(descriptor=f"anthropic/{model}", context_tokens=context,
                      capabilities={"streaming": True, "tool_calls": True},
                      description="Anthropic Messages API (any model name the API serves)")
            for model, context in KNOWN_MODELS.items()
        ]

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.context_tokens = KNOWN_MODELS.get(self.model, 0)

    async def load(self) -> None:
        # The key goes in x-api-key, not as a bearer token.
        headers = {"anthropic-version": API_VERSION}
        if self.options.api_key:
            headers["x-api-key"] = self.options.api_key
        self._client = httpx.AsyncClient(base_url=self.options.base_url, headers=headers,
                                         timeout=httpx.Timeout(self.options.timeout_s))

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
        yield Done(reply.reason, reply.usage())

    async def _events(self, request: GenerationRequest, cancel: CancelToken, reply: _Reply) -> AsyncIterator[LlmEvent]:
        url = f"{self.options.base_url}/v1/messages"
        cancelled = asyncio.ensure_future(cancel.wait())
        response: httpx.Response | None = None
        try:
            client = self.http_client()
            sent = remote.send(client, client.build_request("POST", url, json=self._body(request)),
                               endpoint="/v1/messages", model=self.descriptor)
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
                if line is None:
                    raise Unavailable(f"{url} ended the stream before message_stop", model=self.descriptor)
                if not line.startswith("data:"):
                    continue  # "event:" lines repeat the type that the data carries
                event = json.loads(line[5:])
                if not isinstance(event, dict):
                    raise json.JSONDecodeError("the event is not an object", line, 5)
                if event.get("type") == "message_stop":
                    return
                for made in self._on_event(event, reply):
                    yield made
        except httpx.HTTPError as exc:
            raise remote.transport_error(exc, url=url, timeout_s=self.options.timeout_s, model=self.descriptor) from None
        except json.JSONDecodeError as exc:
            log.warning("%s sent a malformed event: %s", url, exc)
            raise Unavailable(f"{url} sent a malformed event", model=self.descriptor) from None
        finally:
            cancelled.cancel()
            if response is not None:
                await response.aclose()

    def _on_event(self, event: dict[str, Any], reply: _Reply) -> list[LlmEvent]:
        """What one server-sent event adds: text now, a tool call once its block stops."""
        kind = event.get("type")
        if kind == "message_start":
            usage = (event.get("message") or {}).get("usage") or {}
            cached = int(usage.get("cache_read_input_tokens") or 0)
            # The API counts cache reads and writes apart from input_tokens; ours include them.
            reply.input_tokens = int(usage.get("input_tokens") or 0) + cached + int(
                usage.get("cache_creation_input_tokens") or 0)
            reply.cached_tokens = cached
            reply.output_tokens = int(usage.get("output_tokens") or 0)
        elif kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                reply.blocks[int(event.get("index", 0))] = {"id": block.get("id") or new_call_id(),
                                                            "name": block.get("name", ""), "json": []}
            elif block.get("type") == "text" and block.get("text"):
                return [TextDelta(block["text"])]
        elif kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                return [TextDelta(delta["text"])]
            if delta.get("type") == "input_json_delta":
                block = reply.blocks.get(int(event.get("index", 0)))
                if block is not None:
                    block["json"].append(delta.get("partial_json") or "")
        elif kind == "content_block_stop":
            block = reply.blocks.pop(int(event.get("index", 0)), None)
            if block is not None:
                reply.calls += 1
                return [ToolCallMade(ToolCall(block["id"], block["name"], _arguments("".join(block["json"]))))]
        elif kind == "message_delta":
            stop = (event.get("delta") or {}).get("stop_reason")
            if stop:
                reply.reason = _FINISH.get(stop, FinishReason.STOP)
            usage = event.get("usage") or {}
            reply.output_tokens = int(usage.get("output_tokens") or reply.output_tokens)  # a running total
        elif kind == "error":
            error = event.get("error") or {}
            # What the remote wrote is logged for the operator; the client gets its error type.
            log.warning("%s: the API reported an error mid-stream: %s", self.descriptor, json.dumps(error)[:300])
            kind_name = str(error.get("type") or "error")
            raise _ERRORS.get(kind_name, Unavailable)(f"the Anthropic API reported {kind_name} mid-stream",
                                                      model=self.descriptor)
        return []  # ping and event types added later are skipped, as the API's versioning policy asks

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        sampling = request.sampling
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": sampling.max_tokens or self.settings.anthropic_max_tokens,
            "messages": _wire_messages(request.messages),
            "stream": True,
        }
        system = "\n\n".join(m.content for m in request.messages if m.role == "system" and m.content)
        if system:
            body["system"] = system
        for key, value in (("temperature", sampling.temperature), ("top_p", sampling.top_p)):
            if value is not None:
                body[key] = value
        if sampling.stop:
            body["stop_sequences"] = list(sampling.stop)
        if request.tools:
            body["tools"] = [{"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
                             for t in request.tools]
            body["tool_choice"] = _tool_choice(request.tool_choice)
        return body


def _tool_choice(choice: ToolChoice) -> dict[str, str]:
    if choice.mode == "function":
        return {"type": "tool", "name": choice.name}
    return {"type": {"required": "any"}.get(choice.mode, choice.mode)}  # auto, none, any


def _arguments(text: str) -> str:
    """A tool's input as JSON text; an empty input (a tool without parameters) is ``{}``."""
    return text if text.strip() else "{}"


def _wire_messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """User and assistant turns of content blocks; consecutive blocks of one role share a turn,
    as the API expects tool results right after the assistant turn that called them."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        blocks: list[dict[str, Any]] = []
        if message.role == "tool":
            role = "user"
            blocks.append({"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.content})
        else:
            role = message.role
            if message.content:
                blocks.append({"type": "text", "text": message.content})
            for call in message.tool_calls:
                blocks.append({"type": "tool_use", "id": call.id, "name": call.name,
                               "input": _input(call.arguments_json)})
        if not blocks:
            continue  # the API refuses empty content
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _input(arguments_json: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments_json or "{}")
    except json.JSONDecodeError:
        raise InvalidInput(f"tool call arguments are not valid JSON: {arguments_json[:100]!r}") from None
    if not isinstance(value, dict):
        raise InvalidInput("tool call arguments must be a JSON object for the Anthropic API")
    return value
