"""Fallback: the ordered list of places a modality can be served from.

A ``ModelChoice`` lists candidate models in order of preference; the mesh
config gives each candidate's provider one or more service addresses. A
``Target`` is one (candidate, address) pair, and a session tries targets in
order: the addresses of a candidate are rotated per session (round-robin of
new sessions over replicas), then the next candidate follows. A target that
errors or stalls before the turn produced audio is recorded as a fallback
with the reason, and the next one serves the turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TypeVar

from voicemesh.errors import DeadlineExceeded, Unavailable, VoiceMeshError, error_for_code

T = TypeVar("T")


@dataclass(frozen=True)
class Candidate:
    """One model choice: descriptor, backend options and (TTS) speed."""

    descriptor: str
    provider: str
    options: dict = field(default_factory=dict, compare=False, hash=False)  # BackendOptions fields
    speed: float = 0.0


@dataclass(frozen=True)
class Target:
    """A candidate at one service address."""

    candidate: Candidate
    address: str

    @property
    def descriptor(self) -> str:
        return self.candidate.descriptor

    def __str__(self) -> str:
        return f"{self.candidate.descriptor}@{self.address}"


def targets(candidates: list[Candidate], addresses: list[list[str]], rotation: list[int]) -> list[Target]:
    """Targets in the order to try: each candidate's addresses rotated by its ``rotation``, candidates in order."""
    found: list[Target] = []
    for candidate, addrs, turn in zip(candidates, addresses, rotation, strict=True):
        if not addrs:
            continue
        start = turn % len(addrs)
        found.extend(Target(candidate, a) for a in addrs[start:] + addrs[:start])
    return found


def order_from(all_targets: list[Target], current: Target | None) -> list[Target]:
    """Targets to try for a turn: the one that served last first, then the rest in preference order."""
    if current is None or current not in all_targets:
        return list(all_targets)
    return [current] + [t for t in all_targets if t != current]


def failure_reason(exc: BaseException) -> str:
    """A short reason for a failed target: the status code name and message."""
    code = getattr(exc, "code", None)
    if callable(code):  # grpc.aio.AioRpcError
        details = exc.details() if hasattr(exc, "details") else ""  # type: ignore[union-attr]
        return f"{code().name}: {details}"
    if isinstance(code, str):  # VoiceMeshError
        return f"{code}: {getattr(exc, 'message', exc)}"
    return f"{type(exc).__name__}: {exc}"


# Codes that say the request itself was refused, so another target is no fix and the client must know.
REFUSALS = frozenset({"INVALID_ARGUMENT", "NOT_FOUND", "UNAUTHENTICATED", "PERMISSION_DENIED",
                      "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION"})


@dataclass
class FallbackLog:
    """Targets that failed within a turn, per modality, with why."""

    entries: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)

    def failed(self, target: Target, exc: BaseException) -> str:
        reason = failure_reason(exc)
        self.entries.append(f"{target}: {reason}")
        self.codes.append(reason.split(":", 1)[0])
        return self.entries[-1]

    def exhausted(self, message: str) -> VoiceMeshError:
        """The error of a turn no target could serve: the targets' own status when they all refused the
        request the same way (a bad key, bad input, a quota), else UNAVAILABLE."""
        message = f"{message}: " + "; ".join(self.entries)
        if self.codes and len(set(self.codes)) == 1 and self.codes[0] in REFUSALS:
            return error_for_code(self.codes[0], message)
        return Unavailable(message)


async def first_of(stream: AsyncIterator[T], timeout_s: float | None, what: str) -> T:
    """The first item of ``stream`` within ``timeout_s``; DeadlineExceeded on a stall, StopAsyncIteration at its end.

    ``timeout_s`` None waits as long as it takes (the last candidate: a slow answer beats none).
    """
    if timeout_s is None:
        return await anext(stream)
    try:
        return await asyncio.wait_for(anext(stream), timeout_s)
    except TimeoutError:
        raise DeadlineExceeded(f"{what}: no first result within {timeout_s * 1000:.0f} ms") from None
