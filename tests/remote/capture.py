"""A loopback HTTP server that records what reaches it and answers every POST with one scripted error.

It plays the server a hostile client would name as ``base_url``: the tests read
the requests it saw (path and Authorization header) and how many connections
are open to it now (HTTP/1.1 keep-alive, so an open HTTP client holds one).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET_BODY = b'{"error": {"message": "internal detail 10.0.0.7 db=prod token=xyz-upstream-secret"}}'


@dataclass
class Seen:
    path: str
    authorization: str


@dataclass
class CaptureServer:
    """Records requests; answers ``status`` with ``body`` (an error body the client must not see)."""

    status: int = 400
    body: bytes = SECRET_BODY
    seen: list[Seen] = field(default_factory=list)
    open_connections: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> CaptureServer:
        state = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: a live client keeps its connection open

            def setup(self):
                super().setup()
                with state._lock:
                    state.open_connections += 1

            def finish(self):
                with state._lock:
                    state.open_connections -= 1
                super().finish()

            def do_POST(self):  # noqa: N802 - http.server API
                self.rfile.read(int(self.headers.get("content-length") or 0))
                with state._lock:
                    state.seen.append(Seen(self.path, self.headers.get("authorization", "")))
                self.send_response(state.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(state.body)))
                self.end_headers()
                self.wfile.write(state.body)

            do_GET = do_POST  # noqa: N815 - a websocket handshake is a GET

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="capture", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
