"""A WebSocket server on loopback in its own thread and event loop: what every test double of a paid cloud
API that speaks WebSocket shares (the TTS provider doubles, Gemini Live, OpenAI Realtime).

The double's loop is never the test's or the service's, so a double that blocks (piper) stalls neither.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Awaitable

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response


class LoopbackServer:
    """A WebSocket server on 127.0.0.1 in a thread; subclasses implement ``handle`` and ``check``."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls  # a server context makes the double wss:// (an SDK that only speaks TLS)
        self.loop = asyncio.new_event_loop()
        self.server: Server | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, name=type(self).__name__, daemon=True)
        self.port = 0

    async def handle(self, ws: ServerConnection) -> None:
        raise NotImplementedError

    def check(self, ws: ServerConnection, request: Request) -> Response | None:
        """The handshake's answer: None to accept, or an HTTP error response."""
        return None

    def start(self):
        self.thread.start()

        async def open_server() -> Server:
            return await serve(self.handle, "127.0.0.1", 0, process_request=self.check, max_size=2**24,
                               ssl=self.tls)

        self.server = self.run(open_server())
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def run(self, coroutine: Awaitable):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.run(self.server.wait_closed())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    @property
    def base_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}"
