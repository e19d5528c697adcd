"""What the gateway checks before it does any work: the key first, then a body within limits.

``AuthFirst`` is ASGI middleware in front of the routes. A request to a
route that forwards to a model service is refused before a byte of its body
is read when the mesh refuses its key (401/403) or its Content-Length is over
the limit (413). A body that is read is counted as it streams in, chunked
bodies included (413 at the limit), and each piece of it must arrive within
``body_timeout_s`` (408). Each refusal closes the connection, so the rest of
an unwanted body is never read. ``parse_json`` refuses JSON the services
could not take (deep nesting, lone surrogates) with ``InvalidInput``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voicemesh.errors import InvalidInput
from voicemesh.gateway.openai_format import error_body

log = logging.getLogger(__name__)

# Deeper than any chat request or tool schema needs, and far from Python's recursion limit.
MAX_JSON_DEPTH = 64


class Refused(Exception):
    """A request the gateway itself refuses: an HTTP status and the OpenAI error fields."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        # Connection: close, as the client may still be sending a body nobody will read.
        return JSONResponse(error_body(self.message, self.kind, self.code), status_code=self.status,
                            headers={**self.headers, "connection": "close"})


def too_large(limit: int, size: int | None = None) -> Refused:
    what = f"request body of {size} bytes" if size is not None else "request body"
    return Refused(413, f"{what} is over the limit of {limit} bytes (--max-body-bytes)", code="request_too_large")


class AuthFirst:
    """ASGI middleware: authorize from the headers, then admit the body within its limits.

    ``authorize(method, path, headers)`` raises ``Refused`` for a request whose
    key may not use the route; it runs before the body is read.
    """

    def __init__(self, app: ASGIApp, *, authorize: Callable[[str, str, Headers], Awaitable[None]],
                 max_body_bytes: int, body_timeout_s: float):
        self.app = app
        self.authorize = authorize
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            await self.authorize(scope["method"], scope["path"], headers)
            length = headers.get("content-length")
            if length is not None and length.isascii() and length.isdigit() and int(length) > self.max_body_bytes:
                raise too_large(self.max_body_bytes, int(length))
        except Refused as exc:
            await exc.response()(scope, receive, send)
            return
        await self.app(scope, self._limited(receive), send)

    def _limited(self, receive: Receive) -> Receive:
        received = 0
        complete = False

        async def limited() -> Message:
            nonlocal received, complete
            if complete:  # after the body, receive() only waits for the client to leave: no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout_s)
            except TimeoutError:
                raise Refused(408, f"no part of the request body arrived for {self.body_timeout_s:g} s "
                                   "(--body-timeout-s)", code="request_timeout") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise too_large(self.max_body_bytes)
                complete = not message.get("more_body", False)
            else:
                complete = True
            return message

        return limited


def parse_json(body: bytes) -> dict:
    """A JSON request body as a dict; ``InvalidInput`` for anything the services could not take."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidInput(f"request body is nested more than {MAX_JSON_DEPTH} levels deep") from None
    if not isinstance(data, dict):
        raise InvalidInput("request body must be a JSON object")
    _check_values(data)
    return data


def _check_values(data: Any) -> None:
    """Refuse nesting deeper than MAX_JSON_DEPTH and strings that are not Unicode text (a lone
    surrogate such as "\\ud800" is valid JSON, but no UTF-8 encoder, protobuf's included, takes it)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise InvalidInput(f"request body is nested more than {MAX_JSON_DEPTH} levels deep")
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key)
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            _check_text(value)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"request body has a string with an unpaired surrogate at character {exc.start}: "
                           "it is not Unicode text") from None
