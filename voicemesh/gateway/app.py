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
import itertools
import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator

import grpc
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from voicemesh.client.session import DEFAULT_ADDRESS
from voicemesh.descriptors import parse
from voicemesh.errors import InvalidInput, ModelNotFound, VoiceMeshError
from voicemesh.gateway import audio_routes, console_routes, realtime
from voicemesh.gateway import openai_format as fmt
from voicemesh.gateway.errors import error_response, exception_error
from voicemesh.gateway.keys import DESCRIBED, KeyCheck
from voicemesh.gateway.limits import AuthFirst, Refused, parse_json
from voicemesh.gateway.names import Names
from voicemesh.mesh import MeshConfig
from voicemesh.orchestrator.clients import MeshClients
from voicemesh.v1 import llm_pb2

log = logging.getLogger(__name__)

# What a browser app may send and read across origins (the SDKs' own headers included).
CORS_EXPOSED = ("retry-after", "retry-after-ms", "x-should-retry", "x-request-id")
# POST route -> the modality whose service checks the caller's key before the body is read.
KEYED_ROUTES = {"/v1/chat/completions": "llm", "/v1/audio/transcriptions": "stt", "/v1/audio/speech": "tts"}


class Gateway:
    """Routes and the gRPC clients they share."""

    def __init__(self, mesh: MeshConfig, *, timeout_s: float = 120.0, max_body_bytes: int = 25 * 1024 * 1024,
                 max_audio_s: float = 600.0, body_timeout_s: float = 30.0, cors_origins: tuple[str, ...] = (),
                 orchestrator: str = DEFAULT_ADDRESS):
        self.clients = MeshClients(mesh)
        self.mesh = mesh
        self.timeout_s = timeout_s
        self.max_body_bytes = max_body_bytes
        self.max_audio_s = max_audio_s
        self.body_timeout_s = body_timeout_s
        self._rotation: dict[tuple[str, str], itertools.count] = defaultdict(itertools.count)
        self.keys = KeyCheck(mesh, self.clients)
        self.names = Names(mesh)
        self.cors_origins = tuple(cors_origins)
        self.orchestrator = orchestrator  # the console's sessions (voicemesh.gateway.console_bridge)

    def app(self) -> Starlette:
        # CORS outside AuthFirst, so refusals (401, 413) reach a browser app with their CORS headers too.
        cors = [Middleware(CORSMiddleware, allow_origins=list(self.cors_origins), allow_methods=["*"],
                           allow_headers=["*"], expose_headers=list(CORS_EXPOSED), max_age=600)]
        return Starlette(
            routes=[
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/models/{model_id:path}", self.model, methods=["GET"]),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/audio/transcriptions", self.transcribe, methods=["POST"]),
                Route("/v1/audio/speech", self.speech, methods=["POST"]),
                WebSocketRoute("/v1/realtime", self.realtime_socket),
                *console_routes.routes(self),
            ],
            middleware=[*(cors if self.cors_origins else []),
                        Middleware(AuthFirst, authorize=self._authorize, max_body_bytes=self.max_body_bytes,
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

    def stub(self, modality: str, descriptor: str):
        provider = parse(descriptor).provider
        addresses = self.mesh.addresses(modality, provider)
        address = addresses[next(self._rotation[(modality, provider)]) % len(addresses)]
        return self.clients.stub(modality, address)

    @staticmethod
    def metadata(request: Request) -> tuple[tuple[str, str], ...]:
        metadata = [("x-session-id", request.headers.get("x-session-id") or f"gw-{uuid.uuid4().hex[:12]}")]
        if request.headers.get("authorization"):
            metadata.append(("authorization", request.headers["authorization"]))
        return tuple(metadata)

    @staticmethod
    async def json(request: Request) -> dict:
        return parse_json(await request.body())  # AuthFirst bounds its size and pace

    async def _authorize(self, method: str, path: str, headers: Headers) -> None:
        modality = KEYED_ROUTES.get(path) if method == "POST" else None
        if modality is not None:
            await self.keys.check(modality, headers.get("authorization", ""))

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
        found = await self._listed(request)
        if isinstance(found, Response):
            return found
        return JSONResponse({"object": "list", "data": list(found.values())})

    async def model(self, request: Request) -> Response:
        model_id = request.path_params["model_id"]
        found = await self._listed(request)
        if isinstance(found, Response):
            return found
        if model_id not in found:
            return error_response(ModelNotFound(f"The model '{model_id}' does not exist or cannot answer on "
                                                "this mesh (see GET /v1/models)"))
        return JSONResponse(found[model_id])

    async def _listed(self, request: Request) -> dict[str, dict] | Response:
        """The models that can answer (each service's Describe, remote providers only where the mesh
        routes them by name) and the aliases that resolve to them, by id."""
        from voicemesh.client.describe import DESCRIBABLE

        seen: dict[str, dict] = {}
        for modality, table in self.mesh.routes.items():
            stub_cls, request_cls = DESCRIBABLE[DESCRIBED[modality]]
            for address in sorted({a for addresses in table.values() for a in addresses}):
                try:
                    response = await stub_cls(self.clients.channel(address)).Describe(
                        request_cls(), timeout=10, metadata=self.metadata(request))
                except grpc.aio.AioRpcError as exc:
                    if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                        return error_response(exc)
                    log.warning("%s service at %s did not answer Describe: %s", modality, address, exc.details())
                    continue
                for model in response.description.models:
                    if not self.names.listable(modality, model.provider):
                        continue
                    for name in (model.descriptor, *self.names.aliases_of(model.descriptor)):
                        seen.setdefault(name, {"id": name, "object": "model", "created": 0,
                                               "owned_by": model.provider})
        return seen

    # -- /v1/chat/completions ---------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        try:
            body = await self.json(request)
            requested = fmt.require(body, "model", str)
            model = self.names.model(requested)
            generate = fmt.generate_request(body)
            stream = fmt.optional(body, "stream", bool, False)
            include_usage = bool((fmt.optional(body, "stream_options", dict, {}) or {}).get("include_usage"))
            finished = asyncio.Event()
            requests = _until(finished, llm_pb2.ChatRequest(config=llm_pb2.ChatConfig(model=model)),
                              llm_pb2.ChatRequest(generate=generate))
            call = self.stub("llm", model).Chat(requests, timeout=self.timeout_s, metadata=self.metadata(request))
            events = self._chat_events(call, finished)
            first = await anext(events)  # errors before the first event become an HTTP error
        except (VoiceMeshError, grpc.aio.AioRpcError) as exc:
            return error_response(exc)
        completion = fmt.Completion(requested)
        if stream:
            return StreamingResponse(self._chat_sse(completion, first, events, include_usage),
                                     media_type="text/event-stream")
        text, calls, done = "", [], None
        try:
            async for response in _chain(first, events):
                kind = response.WhichOneof("event")
                if kind == "text_delta":
                    text += response.text_delta
                elif kind == "tool_call":
                    calls.append(response.tool_call)
                elif kind == "done":
                    done = response.done
        except (VoiceMeshError, grpc.aio.AioRpcError) as exc:  # nothing was sent yet: a proper error status
            return error_response(exc)
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
        yield fmt.sse(completion.chunk({"role": "assistant", "content": ""}))
        calls = 0
        try:
            async for response in _chain(first, events):
                kind = response.WhichOneof("event")
                if kind == "text_delta":
                    yield fmt.sse(completion.chunk({"content": response.text_delta}))
                elif kind == "tool_call":
                    yield fmt.sse(completion.chunk({"tool_calls": [fmt.tool_call_json(response.tool_call, calls)]}))
                    calls += 1
                elif kind == "done":
                    yield fmt.sse(completion.chunk({}, fmt.FINISH_REASONS[response.done.finish_reason]))
                    if include_usage:
                        yield fmt.sse(completion.usage_chunk(fmt.usage_json(response.done)))
        except (VoiceMeshError, grpc.aio.AioRpcError) as exc:  # after the headers went out, in band
            yield fmt.sse(exception_error(exc)[1])
        yield "data: [DONE]\n\n"

    # -- /v1/audio/* (voicemesh.gateway.audio_routes) ---------------------------------------

    async def transcribe(self, request: Request) -> Response:
        return await audio_routes.transcribe(self, request)

    async def speech(self, request: Request) -> Response:
        return await audio_routes.speech(self, request)

    async def realtime_socket(self, websocket: WebSocket) -> None:
        await realtime.realtime(self, websocket)


async def _until(finished: asyncio.Event, *requests) -> AsyncIterator:
    """Send ``requests``, then keep the stream open until ``finished`` is set."""
    for request in requests:
        yield request
    await finished.wait()


async def _chain(first, rest: AsyncIterator) -> AsyncIterator:
    yield first
    async for item in rest:
        yield item
