"""Slots of a scarce resource (generation contexts, decoding streams, cascade sessions), shared fairly
among API keys. The one admission class of the mesh; backends use it (it never imports grpc).

- ``capacity`` slots in all (0: no limit). Without keys (auth off: the owner is ""), every request is the
  same caller: it takes a free slot or waits in the queue like a key's request, first come first served.
- With keys, one key holds at most ``per_key`` slots (by default ``capacity - 1``: one slot is always
  left to the other keys, so one key cannot hold every slot while another waits; 0: no per-key limit).
  The runtime's stream limits (``voicemesh.runtime.limits``) count open streams with it too.
- A request that finds no slot it may take waits in a bounded queue (``queue`` requests, at most
  ``wait_s``) when ``wait_s`` > 0; a freed slot goes to the waiting key that holds the fewest, first come
  first served among equals. Otherwise, or when the queue is full or the wait runs out, RESOURCE_EXHAUSTED
  with a retry hint (the message and ``retry_after_s``; the runtime sends it as ``retry-after-ms``).

The owner of a request is the API key id the runtime bound to the RPC (``owner``), read when the slot is
taken. ``release`` may be called from any thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import threading
import time
from dataclasses import dataclass, field

from voicemesh.errors import ResourceExhausted

# The API key id of the RPC being served ("" when keys are not checked); set by the server runtime.
owner: contextvars.ContextVar[str] = contextvars.ContextVar("voicemesh_owner", default="")


@dataclass(eq=False)
class Ticket:
    """One slot held; ``release`` gives it back (once, from any thread)."""

    admission: Admission
    owner: str
    taken: float = field(default_factory=time.monotonic)
    released: bool = False

    def release(self) -> None:
        self.admission.release(self)


@dataclass(eq=False)
class _Waiter:
    owner: str
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


class Admission:
    """Counts held slots against ``capacity``; fair among keys, optionally with a bounded wait."""

    def __init__(self, capacity: int, what: str = "slots", *, flag: str = "", per_key: int | None = None,
                 key_flag: str = "", queue: int = 0, wait_s: float = 0.0, model: str = ""):
        self.capacity = max(0, int(capacity))
        self.what = what
        self.flag, self.key_flag = flag, key_flag  # the settings that size it, named in refusals
        self.per_key = max(1, self.capacity - 1) if per_key is None else max(0, int(per_key))
        self.queue = max(0, int(queue))
        self.wait_s = max(0.0, float(wait_s))
        self.model = model
        self._open = 0
        self._held: dict[str, int] = {}
        self._waiters: list[_Waiter] = []
        self._hold_s = 0.0  # a moving average of how long a slot is held, for the retry hint
        self._lock = threading.Lock()

    @property
    def open(self) -> int:
        return self._open

    @property
    def limit(self) -> int:
        return self.capacity

    def held(self, key: str) -> int:
        return self._held.get(key, 0)

    def _free(self) -> bool:
        return not self.capacity or self._open < self.capacity

    def _under_share(self, key: str) -> bool:
        return not key or not self.per_key or self._held.get(key, 0) < self.per_key

    def _may_take(self, key: str) -> bool:
        return self._free() and self._under_share(key)

    def _take(self, key: str) -> Ticket:
        self._open += 1
        if key:
            self._held[key] = self._held.get(key, 0) + 1
        return Ticket(self, key)

    def acquire(self, key: str | None = None) -> Ticket:
        """Take a slot now or raise RESOURCE_EXHAUSTED (never waits)."""
        key = owner.get() if key is None else key
        with self._lock:
            if self._may_take(key) and not self._eligible_waiter():
                return self._take(key)
            raise self._refusal(key)

    async def wait(self, key: str | None = None) -> Ticket:
        """Take a slot, waiting in the bounded queue for one if this admission has a wait."""
        key = owner.get() if key is None else key
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._may_take(key) and not self._eligible_waiter():
                return self._take(key)
            if self.wait_s <= 0 or len(self._waiters) >= self.queue:
                raise self._refusal(key)
            waiter = _Waiter(key, loop.create_future(), loop)
            self._waiters.append(waiter)
        try:
            await asyncio.wait({waiter.future}, timeout=self.wait_s)
        finally:
            ticket = self._withdraw(waiter)
        if ticket is None:  # the wait ran out
            raise self._refusal(key, waited=True)
        return ticket

    def _withdraw(self, waiter: _Waiter) -> Ticket | None:
        """The slot the waiter was granted, or None after taking it out of the queue. A waiter cancelled
        after its grant (its client left) gives the slot back at once."""
        with self._lock:
            if waiter.future.done() and not waiter.future.cancelled():
                ticket = waiter.future.result()
            else:
                ticket = None
                waiter.future.cancel()
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        task = asyncio.current_task()
        if ticket is not None and task is not None and task.cancelling():
            ticket.release()
            return None
        return ticket

    def release(self, ticket: Ticket | None = None) -> None:
        """Give a slot back (thread-safe); the next fair waiter gets it."""
        with self._lock:
            if ticket is not None:
                if ticket.released:
                    return
                ticket.released = True
                held_s = time.monotonic() - ticket.taken
                self._hold_s = held_s if self._hold_s == 0 else 0.8 * self._hold_s + 0.2 * held_s
                if ticket.owner:
                    left = self._held.get(ticket.owner, 0) - 1
                    if left > 0:
                        self._held[ticket.owner] = left
                    else:
                        self._held.pop(ticket.owner, None)
            self._open = max(0, self._open - 1)
            loops = {waiter.loop for waiter in self._waiters}
        for loop in loops:
            try:
                loop.call_soon_threadsafe(self._grant)
            except RuntimeError:  # that loop is closed: its waiters are gone
                pass

    def _eligible_waiter(self) -> _Waiter | None:
        """The waiter that gets the next free slot: of the key holding fewest, the earliest (lock held)."""
        best = None
        for waiter in self._waiters:
            if waiter.future.done() or not self._under_share(waiter.owner):
                continue
            if best is None or self._held.get(waiter.owner, 0) < self._held.get(best.owner, 0):
                best = waiter
        return best

    def _grant(self) -> None:
        with self._lock:
            while self._free():
                waiter = self._eligible_waiter()
                if waiter is None:
                    return
                self._waiters.remove(waiter)
                waiter.future.set_result(self._take(waiter.owner))

    def retry_after_s(self) -> int:
        """A guess of when a slot frees: the mean hold time times the queue ahead, per slot (1-60 s)."""
        hold = self._hold_s or 1.0
        return int(min(60, max(1, math.ceil(hold * (len(self._waiters) + 1) / max(1, self.capacity)))))

    def _refusal(self, key: str, *, waited: bool = False) -> ResourceExhausted:
        hint = self.retry_after_s()
        flag = f" ({self.flag})" if self.flag else ""
        if not self._under_share(key):
            total = f" of the {self.capacity}" if self.capacity else ""
            key_flag = f" ({self.key_flag})" if self.key_flag else ""
            message = (f"API key {key} holds {self._held[key]}{total} {self.what}, its share{key_flag} (the rest "
                       f"is kept for other keys); close one or retry in about {hint} s")
        else:
            queued = f", {len(self._waiters)} request(s) waiting" if self._waiters else ""
            waited_text = f" after waiting {self.wait_s:g} s" if waited else ""
            message = (f"the server is busy{waited_text}: {self._open} of {self.capacity} {self.what}{flag} are "
                       f"in use{queued}, its limit; retry in about {hint} s")
        error = ResourceExhausted(message, model=self.model)
        error.retry_after_s = hint
        return error
