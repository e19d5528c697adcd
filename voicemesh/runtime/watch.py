"""Ends a stream from outside its servicer: idle, too long, or refused by a check made as it runs.

Every streaming RPC of a server runs under one ``StreamWatch`` (``voicemesh.runtime.interceptor``):

- **idle timeout** (``--idle-timeout-s``): no message in either direction for that long ends the
  stream with DEADLINE_EXCEEDED. A client that sends a config and then nothing holds a slot no longer.
- **longest stream** (``--max-stream-s``): the stream ends with RESOURCE_EXHAUSTED at its deadline.
- **checks as it goes** (``--usage-interval-s``): every interval the usage so far is written to the
  ledger and the key and its quotas are checked again; a revoked or expired key, or a quota used up,
  ends the stream with that check's status. A check may also stop the stream at once (``stop``), as the
  usage meter does the moment a quota is overrun.

Only the wait for the servicer's next response is cut: a stop never lands in gRPC's own write of a
response; it takes effect before the next one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from voicemesh.errors import DeadlineExceeded, Unavailable

log = logging.getLogger(__name__)


class StreamWatch:
    """The limits one stream runs under, and the task that enforces them."""

    def __init__(self, *, idle_s: float = 0.0, deadline: float | None = None,
                 expired: Callable[[], Exception] | None = None, every_s: float = 0.0,
                 check: Callable[[], Awaitable[None]] | None = None):
        self.idle_s = idle_s
        self.deadline = deadline  # time.monotonic() of --max-stream-s, or None
        self._expired = expired
        self.every_s = every_s
        self._check = check
        self.last = time.monotonic()  # the last message in either direction
        self.reason: Exception | None = None
        self._timer: asyncio.Timeout | None = None

    @property
    def needed(self) -> bool:
        return bool(self.idle_s > 0 or self.deadline is not None or (self._check and self.every_s > 0))

    def touch(self) -> None:
        self.last = time.monotonic()

    def stop(self, reason: Exception) -> None:
        """End the stream with ``reason``'s status as soon as possible (the first reason wins)."""
        if self.reason is None:
            self.reason = reason
        if self._timer is not None and not self._timer.expired():
            self._timer.reschedule(asyncio.get_running_loop().time())

    async def requests(self, requests: AsyncIterator) -> AsyncIterator:
        async for request in requests:
            self.touch()
            yield request

    async def guarded(self, responses: AsyncIterator) -> AsyncIterator:
        """``responses`` until a limit or a check stops the stream (then its reason is raised)."""
        watcher = asyncio.create_task(self._watch(), name="stream-watch") if self.needed else None
        try:
            while True:
                if self.reason is not None:
                    raise self.reason
                try:
                    async with asyncio.timeout(None) as self._timer:
                        if self.reason is not None:  # stopped while the last response was being written
                            raise self.reason
                        response = await anext(responses)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    if self.reason is None:
                        raise  # the servicer's own timeout, not ours
                    raise self.reason from None
                finally:
                    self._timer = None
                self.touch()
                yield response
        finally:
            if watcher is not None:
                watcher.cancel()

    async def _watch(self) -> None:
        next_check = time.monotonic() + self.every_s if self._check and self.every_s > 0 else None
        while self.reason is None:
            due = [t for t in (self.deadline, self.last + self.idle_s if self.idle_s > 0 else None, next_check)
                   if t is not None]
            await asyncio.sleep(max(0.0, min(due) - time.monotonic()))
            now = time.monotonic()
            if self.deadline is not None and now >= self.deadline and self._expired is not None:
                self.stop(self._expired())
            elif self.idle_s > 0 and now - self.last >= self.idle_s:
                self.stop(DeadlineExceeded(
                    f"no message on this stream for {self.idle_s:g} s, the server's idle timeout "
                    "(--idle-timeout-s); open a new stream when there is something to send", reason="IDLE_TIMEOUT"))
            elif next_check is not None and now >= next_check:
                try:
                    await self._check()
                except Unavailable as exc:  # a ledger outage does not end the streams already admitted
                    log.warning("check of an open stream skipped: %s", exc)
                except Exception as exc:  # revoked, expired, over quota: the check's own status
                    self.stop(exc)
                next_check = time.monotonic() + self.every_s
