"""Connection guards of the gateway's HTTP server, on uvicorn's h11 protocol.

uvicorn closes keep-alive connections that stay idle, but sets no bound on how
long a client may take to send its request headers: a socket that connects and
sends nothing, or sends its headers a byte at a time (slowloris), is held for
ever, and every byte restarts the keep-alive timer. ``guarded_protocol`` adds
that bound (``--header-timeout-s``, counted from the connection or from the
previous response, never restarted by data), a cap on open connections (503
beyond it, before the process runs out of file descriptors), stops reading a
request body once its response has gone out (nobody will read the rest), and
answers HTTP that cannot be parsed with an OpenAI-style JSON error instead of
plain text (uvicorn's own ``limit_concurrency`` answers in plain text).
"""

from __future__ import annotations

import asyncio
import json
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from voicemesh.gateway.openai_format import error_body

log = logging.getLogger(__name__)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a connection cap; subclassed by ``guarded_protocol``."""

    header_timeout_s = 10.0
    max_connections = 512
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            log.warning("refusing a connection: %d open, the limit is %d (--max-connections)",
                        len(self.connections) - 1, self.max_connections)
            self._send_error(503, b"Service Unavailable", f"the gateway has {self.max_connections} connections "
                             "open, its limit (--max-connections); retry shortly", "server_error", "unavailable")
            return
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_arrived()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # a request line and headers came in whole
            self._headers_arrived()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.SEND_BODY:
            # The response went out before the app read the whole body: stop reading it. uvicorn
            # would otherwise read (and drop) whatever the client keeps sending, for as long as it does.
            self.transport.close()
        elif self.conn.their_state is h11.IDLE:
            self._await_headers()  # keep-alive: the next request's headers get the same deadline

    def send_400_response(self, msg: str) -> None:
        self._send_error(400, b"Bad Request", f"malformed HTTP request: {msg}", "invalid_request_error",
                         "bad_request")

    def _send_error(self, status: int, reason: bytes, message: str, kind: str, code: str) -> None:
        """An OpenAI error response, then the connection closes (h11 lets a server answer before a request)."""
        body = json.dumps(error_body(message, kind, code)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        try:
            for event in (h11.Response(status_code=status, headers=headers, reason=reason),
                          h11.Data(data=body), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
        except h11.LocalProtocolError:
            pass  # a response was already under way: closing is all that is left
        self.transport.close()

    def _await_headers(self) -> None:
        self._headers_arrived()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _headers_arrived(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            client = "%s:%d" % self.client if self.client else "a client"
            log.info("closing the connection of %s: no complete request headers within %g s",
                     client, self.header_timeout_s)
            self.transport.close()


def guarded_protocol(*, header_timeout_s: float, max_connections: int) -> type[GuardedH11Protocol]:
    """The protocol class to give uvicorn (``http=``) with these bounds."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,),
                {"header_timeout_s": header_timeout_s, "max_connections": max_connections})
