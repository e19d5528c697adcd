"""The gRPC face of the realtime service: validation and event translation.

The servicer is the only part of the service that knows protobuf. It checks
that the stream opens with a session update naming a model, turns every later
request into a client event of ``voicemesh.services.realtime.backend``
(malformed requests end the stream with INVALID_ARGUMENT), and translates the
backend's server events back to ``ConverseResponse`` messages.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
from collections.abc import AsyncIterator

import grpc

from voicemesh.audio import check_pcm, check_sample_rate
from voicemesh.descriptors import parse
from voicemesh.errors import InvalidInput
from voicemesh.runtime.auth import record_unsent
from voicemesh.runtime.service import ModelService
from voicemesh.runtime.streams import read_config
from voicemesh.services.llm.backend import ROLES, Message, Tool, ToolCall
from voicemesh.services.realtime import backend as rt
from voicemesh.v1 import common_pb2, llm_pb2, realtime_pb2

log = logging.getLogger(__name__)

MAX_CHUNK_SECONDS = 2.0
DEFAULT_RATE_HZ = 24000  # the OpenAI Realtime pcm16 rate, used when a config leaves a rate at 0
MAX_SILENCE_MS = 10000
MAX_PREFIX_MS = 5000
MAX_ITEM_ID = 64  # a client's item ids (OpenAI's are 32 characters at most)


def _server_vad(vad: realtime_pb2.ServerVad) -> rt.ServerVad:
    threshold = vad.threshold or rt.ServerVad.threshold
    if not 0.0 < threshold < 1.0:
        raise InvalidInput(f"turn_detection.threshold must be between 0 and 1, got {vad.threshold}")
    silence = vad.silence_duration_ms or rt.ServerVad.silence_duration_ms
    if not 100 <= silence <= MAX_SILENCE_MS:
        raise InvalidInput(f"turn_detection.silence_duration_ms must be 0 (default) or 100..{MAX_SILENCE_MS}, "
                           f"got {vad.silence_duration_ms}")
    if not 0 <= vad.prefix_padding_ms <= MAX_PREFIX_MS:
        raise InvalidInput(f"turn_detection.prefix_padding_ms must be 0..{MAX_PREFIX_MS}, got {vad.prefix_padding_ms}")
    return rt.ServerVad(threshold=threshold, prefix_padding_ms=vad.prefix_padding_ms, silence_duration_ms=silence,
                        create_response=vad.create_response, interrupt_response=vad.interrupt_response)


def _modalities(values: list[str] | tuple[str, ...], what: str) -> tuple[str, ...]:
    for value in values:
        if value not in rt.MODALITIES:
            raise InvalidInput(f"{what} may hold only 'text' and 'audio', got {value!r}")
    return tuple(dict.fromkeys(values))


def _tool(tool: llm_pb2.Tool) -> Tool:
    if not tool.name:
        raise InvalidInput("every tool needs a name")
    try:
        parameters = json.loads(tool.parameters_json) if tool.parameters_json else {}
    except ValueError as exc:
        raise InvalidInput(f"tool {tool.name!r}: parameters_json is not JSON ({exc})") from None
    if not isinstance(parameters, dict):
        raise InvalidInput(f"tool {tool.name!r}: parameters_json must be a JSON object (a JSON Schema)")
    return Tool(name=tool.name, description=tool.description, parameters=parameters)


def session_options(config: realtime_pb2.RealtimeSessionConfig,
                    previous: rt.SessionOptions | None = None) -> rt.SessionOptions:
    """A session update as plain values; empty fields keep ``previous`` (or the defaults)."""
    base = previous or rt.SessionOptions()
    input_rate = config.input_sample_rate_hz or (base.input_sample_rate_hz if previous else DEFAULT_RATE_HZ)
    output_rate = config.output_sample_rate_hz or (base.output_sample_rate_hz if previous else DEFAULT_RATE_HZ)
    check_sample_rate(input_rate, "input_sample_rate_hz")
    check_sample_rate(output_rate, "output_sample_rate_hz")
    return rt.SessionOptions(
        instructions=config.instructions or base.instructions,
        voice=config.voice or base.voice,
        input_sample_rate_hz=input_rate,
        output_sample_rate_hz=output_rate,
        turn_detection=_server_vad(config.turn_detection) if config.HasField("turn_detection")
        else base.turn_detection,
        modalities=_modalities(config.modalities, "modalities") or base.modalities,
        tools=tuple(_tool(t) for t in config.tools) or base.tools,
    )


def chat_message(item: llm_pb2.ChatMessage) -> Message:
    """A conversation item as an LLM message."""
    if item.role not in ROLES:
        raise InvalidInput(f"item.role must be one of {', '.join(ROLES)}, got {item.role!r}")
    if item.role == "tool" and not item.tool_call_id:
        raise InvalidInput("a tool item needs tool_call_id")
    calls = tuple(ToolCall(id=c.id, name=c.name, arguments_json=c.arguments_json) for c in item.tool_calls)
    return Message(role=item.role, content=item.content, tool_calls=calls, tool_call_id=item.tool_call_id)


def _item_id(item_id: str, optional: bool = False) -> str:
    if not item_id and not optional:
        raise InvalidInput("item_delete needs an item_id")
    if len(item_id) > MAX_ITEM_ID:
        raise InvalidInput(f"an item_id has at most {MAX_ITEM_ID} characters, got {len(item_id)}")
    return item_id


async def client_events(requests: AsyncIterator[realtime_pb2.ConverseRequest], model: str,
                        options: rt.SessionOptions) -> AsyncIterator[rt.ClientEvent]:
    """The requests after the first one as validated client events."""
    async for request in requests:
        kind = request.WhichOneof("request")
        if kind == "input_audio_append":
            yield rt.AudioAppend(check_pcm(request.input_audio_append, rate=options.input_sample_rate_hz,
                                           max_seconds=MAX_CHUNK_SECONDS))
        elif kind == "session_update":
            update = request.session_update
            if update.model and update.model != model:
                raise InvalidInput(f"the model of a session cannot change (it is {model!r}, got {update.model!r})")
            options = session_options(update, options)
            yield rt.SessionUpdate(options)
        elif kind == "input_audio_commit":
            yield rt.AudioCommit()
        elif kind == "input_audio_clear":
            yield rt.AudioClear()
        elif kind == "item_create":
            yield rt.ItemCreate(chat_message(request.item_create.item), _item_id(request.item_create.item_id, True))
        elif kind == "response_create":
            yield rt.ResponseCreate(_modalities(request.response_create.modalities, "response_create.modalities"))
        elif kind == "response_cancel":
            yield rt.ResponseCancel()
        elif kind == "item_truncate":
            truncate = request.item_truncate
            if not truncate.item_id or truncate.audio_end_ms < 0:
                raise InvalidInput("item_truncate needs an item_id and audio_end_ms >= 0")
            yield rt.ItemTruncate(truncate.item_id, truncate.audio_end_ms)
        elif kind == "item_delete":
            yield rt.ItemDelete(_item_id(request.item_delete.item_id))
        else:
            raise InvalidInput("empty message: set one field of the request")


def session_config(options: rt.SessionOptions, model: str) -> realtime_pb2.RealtimeSessionConfig:
    """Plain session options back as their proto message."""
    config = realtime_pb2.RealtimeSessionConfig(
        model=model, instructions=options.instructions, voice=options.voice,
        input_sample_rate_hz=options.input_sample_rate_hz, output_sample_rate_hz=options.output_sample_rate_hz,
        modalities=options.modalities,
        tools=[llm_pb2.Tool(name=t.name, description=t.description, parameters_json=json.dumps(dict(t.parameters)))
               for t in options.tools],
    )
    vad = options.turn_detection
    if vad is not None:
        config.turn_detection.CopyFrom(realtime_pb2.ServerVad(
            threshold=vad.threshold, prefix_padding_ms=vad.prefix_padding_ms,
            silence_duration_ms=vad.silence_duration_ms, create_response=vad.create_response,
            interrupt_response=vad.interrupt_response))
    return config


def usage_message(usage: rt.Usage, model: str) -> common_pb2.Usage:
    return common_pb2.Usage(audio_seconds_in=usage.audio_seconds_in, audio_seconds_out=usage.audio_seconds_out,
                            input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                            cached_tokens=usage.cached_tokens, characters=usage.characters,
                            model=usage.model or model)


def _record_unsent(usage: rt.Usage, *, model: str) -> None:
    if usage != rt.Usage(model=usage.model):  # something was consumed
        record_unsent(usage_message(usage, model))


def to_response(event: rt.ServerEvent, model: str) -> realtime_pb2.ConverseResponse:
    """One backend event as its protobuf message."""
    R = realtime_pb2.ConverseResponse
    if isinstance(event, rt.AudioDelta):
        return R(audio_delta=realtime_pb2.ResponseAudioDelta(
            response_id=event.response_id, item_id=event.item_id, audio=event.audio))
    if isinstance(event, rt.TextDelta):
        return R(text_delta=realtime_pb2.ResponseTextDelta(
            response_id=event.response_id, item_id=event.item_id, delta=event.delta,
            audio_transcript=event.audio_transcript))
    if isinstance(event, rt.SpeechStarted):
        return R(speech_started=realtime_pb2.InputSpeech(item_id=event.item_id, audio_ms=event.audio_ms))
    if isinstance(event, rt.SpeechStopped):
        return R(speech_stopped=realtime_pb2.InputSpeech(item_id=event.item_id, audio_ms=event.audio_ms))
    if isinstance(event, rt.InputTranscription):
        return R(input_transcription=realtime_pb2.InputTranscription(
            item_id=event.item_id, text=event.text, final=event.final))
    if isinstance(event, rt.ResponseCreated):
        return R(response_created=realtime_pb2.ResponseCreated(response_id=event.response_id, item_id=event.item_id))
    if isinstance(event, rt.ResponseDone):
        return R(response_done=realtime_pb2.ResponseDone(
            response_id=event.response_id, status=event.status, usage=usage_message(event.usage, model),
            tool_calls=[llm_pb2.ToolCall(id=c.id, name=c.name, arguments_json=c.arguments_json)
                        for c in event.tool_calls]))
    if isinstance(event, rt.ItemTruncated):
        return R(item_truncated=realtime_pb2.ItemTruncated(
            item_id=event.item_id, audio_end_ms=event.audio_end_ms, text=event.text))
    if isinstance(event, rt.ItemDeleted):
        return R(item_deleted=realtime_pb2.ItemDeleted(item_id=event.item_id))
    if isinstance(event, rt.ErrorEvent):
        return R(error=realtime_pb2.RealtimeError(
            code=event.code, message=event.message,
            detail=common_pb2.ErrorDetail(reason=event.reason, retryable=event.retryable, model=model,
                                          known=event.known)))
    if isinstance(event, rt.SessionUpdated):
        return R(session_updated=realtime_pb2.SessionUpdated(session=session_config(event.options, model)))
    raise TypeError(f"unknown realtime event {event!r}")


class RealtimeServicer:
    """``voicemesh.v1.RealtimeService``."""

    def __init__(self, service: ModelService):
        self.service = service

    async def Describe(self, request: realtime_pb2.RealtimeServiceDescribeRequest,
                       context: grpc.aio.ServicerContext) -> realtime_pb2.RealtimeServiceDescribeResponse:
        return realtime_pb2.RealtimeServiceDescribeResponse(description=self.service.description())

    async def Converse(self, requests: AsyncIterator[realtime_pb2.ConverseRequest],
                       context: grpc.aio.ServicerContext) -> AsyncIterator[realtime_pb2.ConverseResponse]:
        config = await read_config(requests, field="session_update")
        if not config.model:
            raise InvalidInput("the first session_update must name the model, for example 'voicemesh/cascade'")
        options = session_options(config)
        variant = parse(config.model).variant
        if variant and not options.voice:  # "voicemesh/cascade:<voice>" names the voice
            options = dataclasses.replace(options, voice=variant)
        provider = self.service.registry.backend_class(parse(config.model).provider)
        remote = config.HasField("backend") and getattr(provider, "uses_remote_options", False)
        backend = await self.service.backend(config.model, config.backend if remote else None)
        if not isinstance(backend, rt.RealtimeBackend):
            raise InvalidInput(f"{config.model!r} is not a realtime model")
        log.info("converse %s (in %d Hz, out %d Hz, server vad %s, modalities %s)", config.model,
                 options.input_sample_rate_hz, options.output_sample_rate_hz, options.turn_detection is not None,
                 ",".join(options.modalities))
        events = client_events(requests, config.model, options)
        try:
            unsent = functools.partial(_record_unsent, model=config.model)
            async with contextlib.aclosing(backend.converse(options, events, on_unsent=unsent)) as server_events:
                async for event in server_events:
                    yield to_response(event, config.model)
        finally:
            await events.aclose()
