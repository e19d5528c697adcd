"""Failed API-key attempts: an audit line each, and a backoff per client address.

Every refused key is logged with the peer's address and the key's id (the public part of
``vm_<id>_<secret>``; never the secret), so an operator can see who guesses. After
``free_failures`` failures from one address within ``window_s``, each further failure from that
address is answered only after a delay that doubles, up to ``max_delay_s``: a guesser is slowed
to a handful of tries a minute, while a valid key from the same address is served at once (a
shared NAT address cannot be locked out by someone else's guessing). A success clears the address.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

from voicemesh.metering.keys import split_key

log = logging.getLogger(__name__)


def peer_address(peer: str | None) -> str:
    """The client's address without its port: ``ipv4:127.0.0.1:5000`` -> ``127.0.0.1``."""
    if not peer:
        return "unknown"
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]") or rest
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    return peer  # unix sockets and others: as grpc names them


def key_id(token: str | None) -> str:
    """The id of a presented key, '-' when none or malformed."""
    parts = split_key(token or "")
    return parts[0][:32] if parts else "-"


class FailedAuth:
    """Counts failed key attempts per address and delays the answers of the ones over the budget."""

    def __init__(self, *, free_failures: int = 5, window_s: float = 60.0, first_delay_s: float = 0.25,
                 max_delay_s: float = 5.0, max_addresses: int = 10_000):
        self.free_failures, self.window_s = free_failures, window_s
        self.first_delay_s, self.max_delay_s = first_delay_s, max_delay_s
        self.max_addresses = max_addresses
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()  # address -> (count, last failure)

    def delay_s(self, failures: int) -> float:
        """How long the answer to the ``failures``-th failure in a row waits."""
        over = failures - self.free_failures
        return 0.0 if over <= 0 else min(self.max_delay_s, self.first_delay_s * 2 ** (over - 1))

    async def refused(self, peer: str | None, token: str | None, exc: BaseException) -> None:
        """Audit one refused key, then wait out the address's backoff before the refusal is sent."""
        address, now = peer_address(peer), time.monotonic()
        count, last = self._failures.pop(address, (0, now))
        count = 1 if now - last > self.window_s else count + 1
        self._failures[address] = (count, now)
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)
        delay = self.delay_s(count)
        log.warning("API key refused: peer=%s key_id=%s failures=%d backoff=%.2fs: %s",
                    address, key_id(token), count, delay, getattr(exc, "message", exc))
        if delay:
            await asyncio.sleep(delay)

    def admitted(self, peer: str | None) -> None:
        """A valid key from ``peer``: its count starts again."""
        if self._failures:
            self._failures.pop(peer_address(peer), None)
