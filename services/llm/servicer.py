"""The gRPC face of the LLM service: protobuf in and out, nothing else.

``Chat`` reads the config, resolves the model to a loaded backend and hands
plain inputs to ``ChatStream``, translating its events back into
``ChatResponse`` messages tagged with the Generate id.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc

from voicemesh.errors import InvalidInput
from voicemesh.runtime.auth import quota_left, record_unsent
from voicemesh.runtime.streams import read_config, reject_second_config
from voicemesh.services.llm.backend import (
    Done,
    FinishReason,
    LlmBackend,
    Message,
    Sampling,
    TextDelta,
    ToolCall,
    ToolCallMade,
    ToolChoice,
)
from voicemesh.services.llm.conversation import Conversation
from voicemesh.services.llm.stream import CancelInput, ChatStream, GenerateInput, Tagged
from voicemesh.tools import parse_tool
from voicemesh.v1 import common_pb2, llm_pb2

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from voicemesh.runtime.service import ModelService

_FINISH = {
    FinishReason.STOP: llm_pb2.FINISH_REASON_STOP,
    FinishReason.LENGTH: llm_pb2.FINISH_REASON_LENGTH,
    FinishReason.TOOL_CALLS: llm_pb2.FINISH_REASON_TOOL_CALLS,
    FinishReason.CANCELLED: llm_pb2.FINISH_REASON_CANCELLED,
}


class LlmServicer:
    """Implements ``voicemesh.v1.LlmService``."""

    def __init__(self, service: ModelService):
        self.service = service

    async def Describe(
        self, request: llm_pb2.LlmServiceDescribeRequest, context: grpc.aio.ServicerContext
    ) -> llm_pb2.LlmServiceDescribeResponse:
        return llm_pb2.LlmServiceDescribeResponse(description=self.service.description())

    async def Chat(
        self, requests: AsyncIterator[llm_pb2.ChatRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[llm_pb2.ChatResponse]:
        config = await read_config(requests)
        if not config.model:
            raise InvalidInput("ChatConfig.model is empty; name a model such as llama.cpp/smollm2-135m-instruct")
        conversation = Conversation(_sampling(config.sampling))
        backend = await self.service.backend(config.model, config.backend if config.HasField("backend") else None)
        if not isinstance(backend, LlmBackend):
            raise InvalidInput(f"{config.model!r} is not served by a language-model provider")
        model = backend.descriptor
        stream = ChatStream(backend, conversation, on_unsent=lambda done: record_unsent(_usage(done, model)))
        default_max = conversation.defaults.max_tokens or getattr(self.service.settings, "max_tokens", 0)
        # Closed here, not by the garbage collector: its request reader lets go of the stream first.
        async with contextlib.aclosing(stream.run(_capped(_inputs(requests), default_max))) as events:
            async for tagged in events:
                yield _response(tagged, backend.descriptor)


async def _capped(inputs: AsyncIterator[GenerateInput | CancelInput], default_max: int) -> AsyncIterator:
    """Each Generate with ``max_tokens`` capped at what the key's output-token quotas have left (checked
    just before, as the runtime checks quotas before every Generate), so a reply cannot overrun them."""
    async for item in inputs:
        left = quota_left("output_tokens") if isinstance(item, GenerateInput) else None
        if left is not None:
            wanted = item.sampling.max_tokens or default_max
            cap = max(1, math.ceil(left))
            if not wanted or wanted > cap:
                log.info("generation %s capped at %d tokens: what the key's output_tokens quota has left", item.id, cap)
                item = dataclasses.replace(item, sampling=dataclasses.replace(item.sampling, max_tokens=cap))
        yield item


async def _inputs(requests: AsyncIterator[llm_pb2.ChatRequest]) -> AsyncIterator[GenerateInput | CancelInput]:
    async for request in requests:
        kind = request.WhichOneof("request")
        reject_second_config(kind)
        if kind == "cancel":
            yield CancelInput()
        else:
            yield _generate(request.generate)


def _generate(generate: llm_pb2.Generate) -> GenerateInput:
    if generate.turn_id < 0:
        raise InvalidInput(f"Generate.turn_id must be 0 (none) or a turn number, got {generate.turn_id}")
    return GenerateInput(
        id=generate.id,
        messages=[_message(m) for m in generate.messages],
        replace_history=generate.replace_history,
        tools=[parse_tool(t.name, t.description, t.parameters_json) for t in generate.tools],
        tool_choice=ToolChoice(generate.tool_choice.mode or "auto", generate.tool_choice.name),
        sampling=_sampling(generate.sampling) if generate.HasField("sampling") else Sampling(),
    )


def _message(message: llm_pb2.ChatMessage) -> Message:
    return Message(
        role=message.role,
        content=message.content,
        tool_calls=tuple(ToolCall(c.id, c.name, c.arguments_json) for c in message.tool_calls),
        tool_call_id=message.tool_call_id,
    )


def _sampling(sampling: llm_pb2.Sampling) -> Sampling:
    return Sampling(
        temperature=sampling.temperature if sampling.HasField("temperature") else None,
        top_p=sampling.top_p if sampling.HasField("top_p") else None,
        max_tokens=sampling.max_tokens if sampling.HasField("max_tokens") else None,
        stop=tuple(sampling.stop),
        seed=sampling.seed if sampling.HasField("seed") else None,
    )


def _response(tagged: Tagged, model: str) -> llm_pb2.ChatResponse:
    event = tagged.event
    if isinstance(event, TextDelta):
        return llm_pb2.ChatResponse(generation_id=tagged.generation_id, text_delta=event.text)
    if isinstance(event, ToolCallMade):
        call = llm_pb2.ToolCall(id=event.call.id, name=event.call.name, arguments_json=event.call.arguments_json)
        return llm_pb2.ChatResponse(generation_id=tagged.generation_id, tool_call=call)
    done = llm_pb2.ChatDone(finish_reason=_FINISH[event.reason], usage=_usage(event, model))
    return llm_pb2.ChatResponse(generation_id=tagged.generation_id, done=done)


def _usage(done: Done, model: str) -> common_pb2.Usage:
    return common_pb2.Usage(
        input_tokens=done.usage.input_tokens,
        output_tokens=done.usage.output_tokens,
        cached_tokens=done.usage.cached_tokens,
        model=model,
    )
