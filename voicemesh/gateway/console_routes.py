"""The browser console: ``/console`` (the page, served from package data) and ``/console/session`` (its socket).

The page is plain HTML, JavaScript and CSS in ``voicemesh/gateway/console/``: no build step, nothing
fetched from elsewhere. Only the files named in ``ASSETS`` are served, so no path from a request ever
reaches the file system.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from voicemesh.gateway.console_bridge import console_session

if TYPE_CHECKING:
    from voicemesh.gateway.app import Gateway

ASSETS = {"index.html": "text/html; charset=utf-8", "console.js": "text/javascript; charset=utf-8",
          "capture.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"}
# The page loads only its own files and talks only to its own origin's socket.
CSP = ("default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' blob: data:; media-src 'self' blob:; "
       "style-src 'self'; script-src 'self'; worker-src 'self' blob:")


def _asset(name: str) -> Response:
    body = resources.files("voicemesh.gateway").joinpath("console", name).read_bytes()
    return Response(body, media_type=ASSETS[name], headers={"cache-control": "no-cache",
                                                            "content-security-policy": CSP})


async def page(request: Request) -> Response:
    return _asset("index.html")


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in ASSETS:
        return Response(f"no console file {name!r}", status_code=404, media_type="text/plain")
    return _asset(name)


def routes(gateway: Gateway) -> list:
    """The console's routes, for the gateway's route table."""

    async def socket(websocket: WebSocket) -> None:
        await console_session(gateway, websocket)

    return [Route("/console", page, methods=["GET"]),
            Route("/console/", lambda request: RedirectResponse("/console"), methods=["GET"]),
            Route("/console/{name}", asset, methods=["GET"]),
            WebSocketRoute("/console/session", socket)]
