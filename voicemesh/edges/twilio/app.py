"""The Twilio edge's routes: the Media Streams WebSocket and a health check."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketState

from voicemesh.edges.twilio import messages as msg
from voicemesh.edges.twilio import signature
from voicemesh.edges.twilio.call import Call, CallOptions

log = logging.getLogger(__name__)

STREAM_PATH = "/twilio/media-stream"


def create_app(options: CallOptions) -> Starlette:
    async def stream(ws: WebSocket) -> None:
        if options.auth_token is not None:
            url = options.public_url or f"wss://{ws.headers.get('host', '')}{STREAM_PATH}"
            if not signature.valid(options.auth_token, url, ws.headers.get(signature.HEADER)):
                log.warning("refused a stream from %s: %s", ws.client.host if ws.client else "?",
                            "no X-Twilio-Signature" if signature.HEADER not in ws.headers
                            else f"X-Twilio-Signature does not match {url} under the auth token")
                await ws.close(code=1008)  # before accept: the handshake is answered 403
                return
        await ws.accept()
        call = Call(ws, options)
        try:
            result = await call.run()
        except msg.ProtocolError as exc:
            log.info("stream %s closed: %d %s", call.stream_sid or "(not started)", exc.code, exc.reason)
            result = (exc.code, exc.reason)
        except Exception as exc:  # the caller went away mid-send, or worse: the call ends either way
            log.warning("stream %s ended: %s: %s", call.stream_sid or "(not started)", type(exc).__name__, exc,
                        exc_info=not isinstance(exc, OSError))
            result = None
        if result is not None and ws.application_state is WebSocketState.CONNECTED:
            await ws.close(code=result[0], reason=result[1])

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[WebSocketRoute(STREAM_PATH, stream), Route("/health", health, methods=["GET"])])
