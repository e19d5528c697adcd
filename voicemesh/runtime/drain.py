"""Graceful drain of a server's open streams after SIGTERM.

The runtime (``server.py``) first reports NOT_SERVING and refuses new streams
with UNAVAILABLE "draining" (``load.Gate``), keeping the port open. Then
``OpenStreams.drain`` lets the open streams finish within the grace period:

- a stream idle for ``idle_s`` (no message either way) is closed at once with
  UNAVAILABLE, saying the server drains, so its client reconnects elsewhere
  instead of holding the pod for the whole grace period;
- a busy stream (audio flowing, a reply being spoken) goes on until it ends;
- what is still open at the end of the grace period is closed with
  UNAVAILABLE, saying so, rather than a bare "Cancelling all calls".

A stream is closed by cancelling the task of its RPC with an error attached
(``cut``); the interceptor turns that cancellation into the error's status.
"""

from __future__ import annotations

import asyncio
import logging
import time

from voicemesh.errors import Unavailable

log = logging.getLogger(__name__)


class OpenStreams:
    """The streams this server has admitted and not yet finished (all on the event loop, no lock).

    Each entry is the interceptor's call record; it has ``active`` (time.monotonic() of its last
    message either way), ``task`` (the RPC's task) and ``cut`` (the error it was closed with, or None).
    """

    def __init__(self) -> None:
        self.calls: set = set()

    def add(self, call) -> None:
        call.task = asyncio.current_task()
        self.calls.add(call)

    def discard(self, call) -> None:
        self.calls.discard(call)

    def cut(self, call, error: Unavailable) -> None:
        if call.cut is not None or call.task is None:
            return
        call.cut = error
        call.task.cancel()

    async def drain(self, grace_s: float, idle_s: float, every_s: float = 0.1) -> None:
        """Return when every open stream has ended, closing idle ones at once and the rest at ``grace_s``."""
        started = time.monotonic()
        idle = Unavailable(f"this server is draining (shutting down) and the stream was idle for {idle_s:g} s: "
                           "reconnect to another replica", reason="DRAINING")
        while self.calls and time.monotonic() - started < grace_s:
            now = time.monotonic()
            for call in list(self.calls):
                if now - call.active >= idle_s:
                    log.info("draining: closing a %s stream idle for %.1f s", call.method, now - call.active)
                    self.cut(call, idle)
            await asyncio.sleep(every_s)
        if not self.calls:
            log.info("drained: every stream ended after %.1f s", time.monotonic() - started)
            return
        late = Unavailable(f"this server is shutting down and the stream did not end within its grace period "
                           f"({grace_s:g} s, --grace-s): reconnect to another replica", reason="DRAINING")
        log.warning("grace period over: closing %d stream(s) still open", len(self.calls))
        for call in list(self.calls):
            self.cut(call, late)
        deadline = time.monotonic() + 1.0  # their status goes out; then the server stops what is left
        while self.calls and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
