"""The gateway's HTTP routes: OpenAI API requests forwarded to the mesh.

Each route turns an OpenAI request into one gRPC stream to the service that
serves the model's provider (from the mesh config), forwarding the caller's
``Authorization`` header so the services apply the same API keys, metering
and quotas as for gRPC clients. Before a route reads a body, ``AuthFirst``
(voicemesh.gateway.limits) has the mesh check the key from the headers alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator

import grpc
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from voicemesh.audio import check_sample_rate, chunks, read_wav, wav_bytes
from voicemesh.descriptors import parse
from voicemesh.errors import InvalidInput, VoiceMeshError
from voicemesh.gateway import openai_format as fmt
from voicemesh.gateway.keys import DESCRIBED, KeyCheck
from voicemesh.gateway.limits import AuthFirst, Refused, parse_json
from voicemesh.mesh import MeshConfig
from voicemesh.orchestrator.clients import MeshClients
from voicemesh.runtime.status import to_status
from voicemesh.v1 import llm_pb2, stt_pb2, tts_pb2

log = logging.getLogger(__name__)

SPEECH_RATE_HZ = 24000  # OpenAI's "pcm" format: 24 kHz s16le mono
SPEECH_FORMATS = ("pcm", "wav")
TRANSCRIPTION_FORMATS = ("json", "text", "verbose_json")
# POST route -> the modality whose service checks the caller's key before the body is read.
KEYED_ROUTES = {"/v1/chat/completions": "llm", "/v1/audio/transcriptions": "stt", "/v1/audio/speech": "tts"}


class Gateway:
    """Routes and the gRPC clients they share."""

    def __init__(self, mesh: MeshConfig, *, timeout_s: float = 120.0, max_body_bytes: int = 25 * 1024 * 1024,
                 max_audio_s: float = 600.0, body_timeout_s: float = 30.0):
        self.clients = MeshClients(mesh)
        self.mesh = mesh
        self.timeout_s = timeout_s
        self.max_body_bytes = max_body_bytes
        self.max_audio_s = max_audio_s
        self.body_timeout_s = body_timeout_s
        self._rotation: dict[tuple[str, str], itertools.count] = defaultdict(itertools.count)
        self.keys = KeyCheck(mesh, self.clients)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/audio/transcriptions", self.transcribe, methods=["POST"]),
                Route("/v1/audio/speech", self.speech, methods=["POST"]),
            ],
            middleware=[Middleware(AuthFirst, authorize=self._authorize, max_body_bytes=self.max_body_bytes,
                                   body_timeout_s=self.body_timeout_s)],
            exception_handlers={404: self._not_found, 405: self._not_allowed, HTTPException: self._http_error,
                                Refused: self._refused, Exception: self._crashed},
            lifespan=self._lifespan,
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        yield
        await self.clients.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _stub(self, modality: str, descriptor: str):
        provider = parse(descriptor).provider
        addresses = self.mesh.addresses(modality, provider)
        address = addresses[next(self._rotation[(modality, provider)]) % len(addresses)]
        return self.clients.stub(modality, address)

    @staticmethod
    def _metadata(request: Request) -> tuple[tuple[str, str], ...]:
        metadata = [("x-session-id", request.headers.get("x-session-id") or f"gw-{uuid.uuid4().hex[:12]}")]
        if request.headers.get("authorization"):
            metadata.append(("authorization", request.headers["authorization"]))
        return tuple(metadata)

    @staticmethod
    async def _json(request: Request) -> dict:
        return parse_json(await request.body())  # AuthFirst bounds its size and pace

    async def _authorize(self, method: str, path: str, headers: Headers) -> None:
        modality = KEYED_ROUTES.get(path) if method == "POST" else None
        if modality is not None:
            await self.keys.check(modality, headers.get("authorization", ""))

    @staticmethod
    def error(exc: BaseException) -> JSONResponse:
        """An OpenAI-style error response for any exception."""
        if isinstance(exc, grpc.aio.AioRpcError):
            code, message = exc.code(), exc.details() or exc.code().name
        else:
            code, message, _ = to_status(exc)
            if code is grpc.StatusCode.INTERNAL:
                log.error("gateway request failed", exc_info=exc)
        status, kind = fmt.http_error(code)
        param = exc.reason if isinstance(exc, InvalidInput) and exc.reason != InvalidInput.reason else None
        return JSONResponse(fmt.error_body(message, kind, code.name.lower(), param), status_code=status)

    async def _not_found(self, request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(fmt.error_body(f"unknown route {request.url.path}", "invalid_request_error",
                                           "not_found"), status_code=404)

    async def _not_allowed(self, request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(fmt.error_body(f"method {request.method} not allowed on {request.url.path}",
                                           "invalid_request_error", "method_not_allowed"), status_code=405)

    async def _http_error(self, request: Request, exc: HTTPException) -> JSONResponse:
        # Starlette's own refusals (a malformed multipart body, say) in the OpenAI shape, not plain text.
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return JSONResponse(fmt.error_body(str(exc.detail), kind, None), status_code=exc.status_code,
                            headers=exc.headers)

    async def _refused(self, request: Request, exc: Refused) -> JSONResponse:
        return exc.response()

    async def _crashed(self, request: Request, exc: Exception) -> JSONResponse:
        # The last resort: Starlette logs the traceback; the client still gets the OpenAI shape.
        return JSONResponse(fmt.error_body("the gateway failed to handle the request", "server_error",
                                           "internal"), status_code=500)

    # -- /v1/models -------------------------------------------------------------------------

    async def models(self, request: Request) -> Response:
        from voicemesh.client.describe import DESCRIBABLE

        seen: dict[str, dict] = {}
        for modality, table in self.mesh.routes.items():
            stub_cls, request_cls = DESCRIBABLE[DESCRIBED[modality]]
            for address in sorted({a for addresses in table.values() for a in addresses}):
                try:
                    response = await stub_cls(self.clients.channel(address)).Describe(
                        request_cls(), timeout=10, metadata=self._metadata(request))
                except grpc.aio.AioRpcError as exc:
                    if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                        return self.error(exc)
                    log.warning("%s service at %s did not answer Describe: %s", modality, address, exc.details())
                    continue
                for model in response.description.models:
                    seen.setdefault(model.descriptor, {"id": model.descriptor, "object": "model", "created": 0,
                                                       "owned_by": model.provider})
        return JSONResponse({"object": "list", "data": list(seen.values())})

    # -- /v1/chat/completions ---------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        try:
            body = await self._json(request)
            model = fmt.require(body, "model", str)
            generate = fmt.generate_request(body)
            stream = fmt.optional(body, "stream", bool, False)
            include_usage = bool((fmt.optional(body, "stream_options", dict, {}) or {}).get("include_usage"))
            finished = asyncio.Event()
            requests = _until(finished, llm_pb2.ChatRequest(config=llm_pb2.ChatConfig(model=model)),
                              llm_pb2.ChatRequest(generate=generate))
            call = self._stub("llm", model).Chat(requests, timeout=self.timeout_s, metadata=self._metadata(request))
            events = self._chat_events(call, finished)
            first = await anext(events)  # errors before the first event become an HTTP error
        except (VoiceMeshError, grpc.aio.AioRpcError) as exc:
            return self.error(exc)
        completion = fmt.Completion(model)
        if stream:
            return StreamingResponse(self._chat_sse(completion, first, events, include_usage),
                                     media_type="text/event-stream")
        text, calls, done = "", [], None
        async for response in _chain(first, events):
            kind = response.WhichOneof("event")
            if kind == "text_delta":
                text += response.text_delta
            elif kind == "tool_call":
                calls.append(response.tool_call)
            elif kind == "done":
                done = response.done
        return JSONResponse(completion.complete(text, calls, fmt.FINISH_REASONS[done.finish_reason],
                                                fmt.usage_json(done)))

    @staticmethod
    async def _chat_events(call, finished: asyncio.Event) -> AsyncIterator[llm_pb2.ChatResponse]:
        """The responses of one generation; the request stream is half-closed once Done arrives."""
        try:
            async for response in call:
                yield response
                if response.WhichOneof("event") == "done":
                    finished.set()
                    return
            raise InvalidInput("the LLM service ended the stream without finishing the generation")
        finally:
            finished.set()
            call.cancel()

    async def _chat_sse(self, completion: fmt.Completion, first, events, include_usage: bool) -> AsyncIterator[str]:
        yield _sse(completion.chunk({"role": "assistant", "content": ""}))
        calls = 0
        try:
            async for response in _chain(first, events):
                kind = response.WhichOneof("event")
                if kind == "text_delta":
                    yield _sse(completion.chunk({"content": response.text_delta}))
                elif kind == "tool_call":
                    yield _sse(completion.chunk({"tool_calls": [fmt.tool_call_json(response.tool_call, calls)]}))
                    calls += 1
                elif kind == "done":
                    yield _sse(completion.chunk({}, fmt.FINISH_REASONS[response.done.finish_reason]))
                    if include_usage:
                        yield _sse(completion.usage_chunk(fmt.usage_json(response.done)))
        except grpc.aio.AioRpcError as exc:  # after the headers went out, the error goes in band
            status, kind = fmt.http_error(exc.code())
            yield _sse(fmt.error_body(exc.details() or exc.code().name, kind, exc.code().name.lower()))
        yield "data: [DONE]\n\n"

    # -- /v1/audio/transcriptions -----------------------------------------------------------

    async def transcribe(self, request: Request) -> Response:
        try:
            form = await request.form(max_part_size=self.max_body_bytes)
            upload = form.get("file")
            model = form.get("model")
            if upload is None or isinstance(upload, str):
                raise InvalidInput("missing required parameter: 'file' (a 16-bit PCM WAV upload)", reason="file")
            if not model or not isinstance(model, str):
                raise InvalidInput("missing required parameter: 'model'", reason="model")
            response_format = str(form.get("response_format") or "json")
            if response_format not in TRANSCRIPTION_FORMATS:
                raise InvalidInput(f"response_format must be one of {', '.join(TRANSCRIPTION_FORMATS)}",
                                   reason="response_format")
            pcm, rate = read_wav(io.BytesIO(await upload.read()))  # AuthFirst bounds the upload's size
            # Refused, not resampled: a tiny file claiming 1 Hz would resample to gigabytes, and the
            # service bills the audio it is sent.
            check_sample_rate(rate, "the WAV file's sample rate")
            if len(pcm) / 2 / rate > self.max_audio_s:
                raise InvalidInput(f"the audio is {len(pcm) / 2 / rate:.1f} s long; the limit is "
                                   f"{self.max_audio_s:g} s (--max-audio-s)", reason="file")
            config = stt_pb2.RecognitionConfig(model=model, language=str(form.get("language") or ""),
                                               sample_rate_hz=rate)
            requests = [stt_pb2.RecognizeRequest(config=config)]
            requests += [stt_pb2.RecognizeRequest(audio=c) for c in chunks(pcm, rate=rate, ms=100)]
            call = self._stub("stt", model).Recognize(iter(requests), timeout=self.timeout_s,
                                                      metadata=self._metadata(request))
            finals = [r.final async for r in call if r.WhichOneof("event") == "final"]
        except (VoiceMeshError, grpc.aio.AioRpcError) as exc:
            return self.error(exc)
        text = " ".join(f.text.strip() for f in finals if f.text.strip())
        if response_format == "text":
            return PlainTextResponse(text)
        if response_format == "json":
            return JSONResponse({"text": text})
        return JSONResponse({
            "task": "transcribe",
            "language": finals[0].language if finals else str(form.get("language") or ""),
            "duration": len(pcm) / 2 / rate,
            "text": text,
            "segments": [{"id": i, "start": f.start_ms / 1000, "end": f.end_ms / 1000, "text": f.text}
                         for i, f in enumerate(finals)],
            "words": [{"word": w.word, "start": w.start_ms / 1000, "end": w.end_ms / 1000}
                      for f in finals for w in f.words],
        })

    # -- /v1/audio/speech -------------------------------------------------------------------

    async def speech(self, request: Request) -> Response:
        try:
            body = await self._json(request)
            model = fmt.require(body, "model", str)
            text = fmt.require(body, "input", str)
            if not text.strip():
                raise InvalidInput("'input' is empty", reason="input")
            voice = fmt.optional(body, "voice", str, "")
            response_format = fmt.optional(body, "response_format", str, "pcm")
            if response_format not in SPEECH_FORMATS:
                raise InvalidInput(f"response_format {response_format!r} is not supported; use one of "
                                   f"{', '.join(SPEECH_FORMATS)}", reason="response_format")
            speed = fmt.optional(body, "speed", (int, float), 1.0)
            descriptor = model if parse(model).variant or not voice else f"{model}:{voice}"
            config = tts_pb2.SynthesisConfig(voice=descriptor, sample_rate_hz=SPEECH_RATE_HZ, speed=speed)
            requests = [tts_pb2.SynthesizeRequest(config=config), tts_pb2.SynthesizeRequest(text=text)]
            call = self._stub("tts", descriptor).Synthesize(iter(requests), timeout=self.timeout_s,
                                                           metadata=self._metadata(request))
            audio = _audio(call)
            first = await anext(audio, b"")  # errors before the first audio become an HTTP error
        except (VoiceMeshError, grpc.aio.AioRpcError) as exc:
            return self.error(exc)
        if response_format == "wav":
            header = wav_bytes(b"", SPEECH_RATE_HZ)
            # Streamed WAV: the sizes are unknown up front, so they are set to the maximum.
            header = header[:4] + b"\xff\xff\xff\xff" + header[8:40] + b"\xff\xff\xff\xff"
            return StreamingResponse(_chain(header, _chain(first, audio)), media_type="audio/wav")
        return StreamingResponse(_chain(first, audio), media_type="audio/pcm")


async def _until(finished: asyncio.Event, *requests) -> AsyncIterator:
    """Send ``requests``, then keep the stream open until ``finished`` is set."""
    for request in requests:
        yield request
    await finished.wait()


async def _audio(call) -> AsyncIterator[bytes]:
    async for response in call:
        if response.WhichOneof("event") == "audio":
            yield response.audio.audio


async def _chain(first, rest: AsyncIterator) -> AsyncIterator:
    yield first
    async for item in rest:
        yield item


def _sse(data: dict) -> str:
    return f"data: {json.dumps(data)}\n\n"
