"""API keys, quotas and usage metering for every service, in the shared runtime.

When a server has a ledger (``--ledger`` / ``VOICEMESH_LEDGER``) and auth is
not turned off (``--no-auth``), every VoiceMesh RPC (not health, not
reflection) must carry ``authorization: Bearer <key>`` metadata: a missing or
unknown key gets UNAUTHENTICATED, a revoked or expired one PERMISSION_DENIED,
and a new stream (or a new turn on a long-lived LLM chat or realtime stream:
``TURN_REQUESTS``) of a key whose quota is used up RESOURCE_EXHAUSTED. The key
is bound to the RPC (``current_key``) and every ``voicemesh.v1.Usage`` the
service emits is committed to the ledger before the client receives it, with
the key, the session (``x-session-id``), the service, the model and the turn
(``x-turn-id``, else 0). Without a ledger, auth and metering are off.

The orchestrator calls ``check_quota()`` before each turn and sends
``forward_metadata(turn)`` on the streams it opens to the model services. A
servicer whose client left before the stream's Usage could be sent calls
``record_unsent(usage)`` so the work done is still metered. A client may name
a stream (``x-stream-id``): its usage record then has an id derived from that
name (``stream_record_id``), so when the service dies with the stream (kill -9,
no Usage sent) the orchestrator records what it sent to it under the same id
(``record_sent``), replacing what the service had written so far, not adding
to it.

Usage is recorded as it happens: a servicer ``meter()``s the units of a stream as
they are received or sent. Every ``--usage-interval-s`` (``checkpoint``, run by the
stream's ``StreamWatch``) the usage so far is written to the ledger as one growing
record (the stream's final Usage replaces it, so a stream still leaves one record per
Usage) and the key and its quotas are checked again: a revoked or expired key, or a
used-up quota, ends open streams within one interval. Between checks the meter
compares the units not yet written with what each unit quota had left, so a quota
is enforced the moment it is overrun (within one audio chunk).
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

import grpc
from google.protobuf.message import Message

from voicemesh.errors import PermissionDenied, ResourceExhausted, Unauthenticated
from voicemesh.metering import keys, quotas
from voicemesh.metering.ledger import Ledger, redact_url
from voicemesh.metering.prices import PriceTable
from voicemesh.metering.records import UNITS, KeyRecord, UsageRecord
from voicemesh.runtime import logs
from voicemesh.runtime.audit import FailedAuth
from voicemesh.runtime.ids import SESSION_ID, session_of, stream_of, stream_record_id, turn_of  # noqa: F401

log = logging.getLogger(__name__)

current_key: contextvars.ContextVar[KeyRecord | None] = contextvars.ContextVar("voicemesh_key", default=None)
_credentials: contextvars.ContextVar[str | None] = contextvars.ContextVar("voicemesh_credentials", default=None)
_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("voicemesh_caller", default=None)

# Response message -> path of its voicemesh.v1.Usage. The orchestrator's UsageReport
# repeats the services' usage and is deliberately not here.
USAGE_PATHS: Mapping[str, tuple[str, ...]] = {
    "voicemesh.v1.RecognizeResponse": ("usage",),
    "voicemesh.v1.SynthesizeResponse": ("usage",),
    "voicemesh.v1.ChatResponse": ("done", "usage"),
    "voicemesh.v1.ConverseResponse": ("response_done", "usage"),
    "voicemesh.v1.RenderResponse": ("usage",),
}


# Request -> the oneof field that starts a turn on a long-lived stream (one LLM chat or realtime
# conversation per session): the key and its quotas are checked again before each.
TURN_REQUESTS: Mapping[str, str] = {
    "voicemesh.v1.ChatRequest": "generate",
    "voicemesh.v1.ConverseRequest": "response_create",
}


def usage_of(message: Message) -> Message | None:
    """The Usage a response message carries, if any."""
    path = USAGE_PATHS.get(message.DESCRIPTOR.full_name)
    if path is None:
        return None
    for name in path:
        if not message.HasField(name):
            return None
        message = getattr(message, name)
    return message


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}


def bearer(metadata: Mapping[str, str]) -> str | None:
    """The key of an ``authorization: Bearer <key>`` header."""
    scheme, _, token = metadata.get("authorization", "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@dataclass
class _Live:
    """Units of one model metered on a stream so far: one ledger record that grows until the Usage."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    units: dict[str, float] = field(default_factory=lambda: dict.fromkeys(UNITS, 0.0))
    written: dict[str, float] = field(default_factory=lambda: dict.fromkeys(UNITS, 0.0))
    time: float = 0.0  # of the version last written: a later version must be stamped later


@dataclass
class Caller:
    """One admitted RPC: who calls, in which session and turn."""

    guard: Guard
    key: KeyRecord | None
    session_id: str
    turn: int
    # Unit -> what the key's unit quotas had left at the last check (the least of them); empty: no limit.
    left: dict[str, float] = field(default_factory=dict)
    stop: Callable[[Exception], None] | None = None  # ends the stream (its StreamWatch)
    stream_id: str | None = None  # the client's name of the stream: its first record's id comes from it
    _live: dict[str, _Live] = field(default_factory=dict)
    _named_used: bool = False  # the record id of ``stream_id`` is taken

    def _record_id(self) -> str:
        """A new record's id: the stream's own for its first record, else a fresh one."""
        if self.stream_id and not self._named_used:
            self._named_used = True
            return stream_record_id(self.stream_id)
        return uuid.uuid4().hex

    async def requests(self, requests: AsyncIterator[Message]) -> AsyncIterator[Message]:
        """The stream's requests; one that starts a turn first passes the key and quota check, and the
        usage from then on is recorded under the turn it names (if it names one)."""
        async for request in requests:
            field_name = TURN_REQUESTS.get(request.DESCRIPTOR.full_name)
            if field_name and request.WhichOneof("request") == field_name:
                if self.key is not None:
                    await self.refresh()
                self.turn = getattr(getattr(request, field_name), "turn_id", 0) or self.turn
            yield request

    async def observe(self, response: Message) -> None:
        """Commit the Usage ``response`` carries (if any) before it is sent."""
        usage = usage_of(response)
        if usage is not None:
            await self.record(usage)

    async def record(self, usage: Message) -> None:
        """Commit one voicemesh.v1.Usage of this RPC to the ledger (it replaces what was metered of its model).

        The write is a task of the guard: cancelling the RPC while it commits
        does not cancel the write.
        """
        await asyncio.shield(self.guard.keep(self.guard.ledger.record(self.final_record(usage))))

    def final_record(self, usage: Message) -> UsageRecord:
        live = self._live.pop(usage.model, None)
        if live is None and len(self._live) == 1:  # metered under another spelling of the same model
            live = self._live.pop(next(iter(self._live)))
        record = self.usage_record(usage)
        if live is None:
            return dataclasses.replace(record, id=self._record_id()) if self.stream_id else record
        return dataclasses.replace(record, id=live.id, time=max(record.time, live.time + 1e-3))

    def usage_record(self, usage: Message) -> UsageRecord:
        """The ledger record of a Usage of this RPC (stamped now, with a fresh record id)."""
        return UsageRecord(
            key_id=self.key.id if self.key else "", session_id=self.session_id, service=self.guard.service,
            model=usage.model, turn=self.turn, audio_seconds_in=usage.audio_seconds_in,
            audio_seconds_out=usage.audio_seconds_out, input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens, cached_tokens=usage.cached_tokens, characters=usage.characters,
            video_seconds_out=usage.video_seconds_out,
        )

    def meter(self, model: str, **units: float) -> None:
        """Count units of ``model`` this stream used just now; stop the stream if that overruns a quota."""
        live = self._live.get(model)
        if live is None:
            live = self._live[model] = _Live(id=self._record_id())
        for unit, amount in units.items():
            live.units[unit] += amount
        for unit, left in self.left.items():
            unwritten = self.unwritten(unit)
            if unwritten > left + 1e-9 and self.stop is not None:  # float sums of chunks: not a hair over
                self.stop(self.guard.over_quota(self.key, unit, left, unwritten))
                return

    def unwritten(self, unit: str) -> float:
        return sum(lv.units[unit] - lv.written[unit] for lv in self._live.values())

    async def checkpoint(self) -> None:
        """Write the usage metered so far, then check the key and its quotas again (raises if refused)."""
        writes = []
        for model, live in self._live.items():
            if live.units == live.written:
                continue
            live.time = max(time.time(), live.time + 1e-3)
            record = dataclasses.replace(self.usage_record(_Units(model, live.units)), id=live.id, time=live.time)
            live.written = dict(live.units)
            writes.append(self.guard.keep(self.guard.ledger.record(record)))
        if writes:
            await asyncio.shield(asyncio.gather(*writes))
        if self.key is not None:
            await self.refresh()

    async def refresh(self) -> None:
        """Check the key and its quotas now (raises if refused) and note what the unit quotas have left."""
        self.left = await self.guard.check(self.key)


@dataclass
class _Units:
    """A Usage-shaped view of metered units (for ``usage_record``)."""

    model: str
    units: dict[str, float]

    def __getattr__(self, name: str) -> float:
        if name in UNITS:
            value = self.units[name]
            return value if name.startswith("audio") else int(round(value))
        raise AttributeError(name)


class Guard:
    """Authenticates RPCs, checks quotas and records usage for one server."""

    def __init__(self, *, service: str, ledger: Ledger, auth: bool = True, prices: PriceTable | None = None):
        self.service = service
        self.ledger = ledger
        self.auth = auth
        self.prices = prices
        self._writes: set[asyncio.Task] = set()  # ledger writes in flight
        self.failures = FailedAuth()  # audit lines and a backoff per address for refused keys

    async def open(self) -> Guard:
        await self.ledger.open()
        log.info("ledger %s open; API keys %s", redact_url(self.ledger.url), "required" if self.auth else "not checked")
        return self

    def keep(self, write) -> asyncio.Task:
        """Run a ledger write in a task this guard owns (awaited by ``close``)."""
        task = asyncio.get_running_loop().create_task(write)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return task

    async def close(self) -> None:
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await self.ledger.close()

    async def admit(self, context: grpc.aio.ServicerContext, *, new_stream: bool) -> Caller:
        """Check the caller's key (and, for a new stream, its quotas); bind it to this RPC."""
        metadata = _metadata(context)
        key = None
        token = bearer(metadata)
        turn = turn_of(metadata)
        left: dict[str, float] = {}
        if self.auth:
            try:
                key = await self.ledger.call(keys.verify, token)
            except (Unauthenticated, PermissionDenied) as exc:  # not a ledger outage
                await self.failures.refused(context.peer(), token, exc)
                raise
            self.failures.admitted(context.peer())
            if new_stream:
                left = await self.ledger.call(self._check, key)
        caller = Caller(self, key, logs.session_id.get(), turn, left, stream_id=stream_of(metadata))
        current_key.set(key)
        _credentials.set(token)
        _caller.set(caller)
        return caller

    async def check(self, key: KeyRecord, pending: Mapping[str, float] | None = None) -> dict[str, float]:
        """Refuse a key that was revoked or expired since, or whose quota is used up; return what its unit
        quotas have left (unit -> the least of them)."""

        def _check(store) -> dict[str, float]:
            fresh = store.get_key(key.id)
            if fresh is None:
                raise Unauthenticated(f"API key {key.id} no longer exists")
            return self._check(store, keys.require_active(fresh), pending)

        return await self.ledger.call(_check)

    def _check(self, store, key: KeyRecord, pending: Mapping[str, float] | None = None) -> dict[str, float]:
        quotas.check(store, key, self.prices, pending=pending)
        return quotas.left(store, key, self.prices)

    def over_quota(self, key: KeyRecord | None, unit: str, left: float, wanted: float) -> Exception:
        """The error that ends a stream whose metered ``unit`` overran what its quota had left."""
        name = f"API key {key.id} ({key.name})" if key is not None else "this API key"
        error = ResourceExhausted(
            f"a quota on {unit} of {name} was used up during this stream: it had {left:g} left and the stream "
            f"used {wanted:g} more", reason="QUOTA_EXCEEDED")
        error.retryable = False
        return error


async def drain(requests: AsyncIterator, *, timeout_s: float = 1.0, max_messages: int = 256) -> None:
    """Read and drop a refused stream's requests until the client half-closes, or for ``timeout_s``."""

    async def _read() -> None:
        count = 0
        async for _request in requests:
            count += 1
            if count >= max_messages:
                return

    try:
        await asyncio.wait_for(_read(), timeout_s)
    except TimeoutError:
        log.debug("refused stream still sending after %.1f s; ending it now", timeout_s)


def from_settings(settings, service: str) -> Guard | None:
    """The guard of a server, or None when it has no ledger (auth and metering off)."""
    url = getattr(settings, "ledger", "")
    if not url:
        log.info("no ledger configured: API keys are not checked and usage is not recorded")
        return None
    return Guard(service=service, ledger=Ledger(url), auth=getattr(settings, "auth", True),
                 prices=PriceTable.from_setting(getattr(settings, "prices", "")))


async def check_quota(pending: Mapping[str, float] | None = None) -> None:
    """For the orchestrator, before each turn: raise if the caller's key may not start it.

    ``pending`` are units the turn is known to need (e.g. ``{"audio_seconds_in": 3.2}``
    of buffered speech); a no-op when the server has no ledger or auth is off.
    """
    caller = _caller.get()
    if caller is not None and caller.key is not None:
        await caller.guard.check(caller.key, pending)


def record_unsent(usage: Message) -> None:
    """For a servicer whose client left before its final Usage could be sent: record it anyway.

    Call it (no await needed; safe in a ``finally`` of a cancelled stream) with
    the voicemesh.v1.Usage the stream would have sent. A Usage that was yielded
    is recorded by the runtime already; do not pass it here too.
    """
    caller = _caller.get()
    if caller is not None:
        caller.guard.keep(caller.guard.ledger.record(caller.final_record(usage)))


def record_sent(service: str, usage: Message, stream_id: str, turn: int = 0) -> None:
    """For the orchestrator: the ``service`` stream it named ``stream_id`` died with its service (no Usage
    came). Record ``usage``, what the orchestrator sent to it, for ``turn``, under the stream's own record id:
    it replaces what the service wrote of that stream before it died, so the stream is billed once, in full.
    A no-op without a ledger."""
    caller = _caller.get()
    if caller is not None:
        record = dataclasses.replace(caller.usage_record(usage), service=service, id=stream_record_id(stream_id),
                                     turn=turn)
        caller.guard.keep(caller.guard.ledger.record(record))


def meter(model: str, **units: float) -> None:
    """For a servicer, as work is done: count ``units`` (names of voicemesh.v1.Usage fields) of ``model``
    on the current stream. They reach the ledger every ``--usage-interval-s`` and the stream's final Usage
    (same model) replaces them; a quota they overrun ends the stream. A no-op without a ledger."""
    caller = _caller.get()
    if caller is not None:
        caller.meter(model, **units)


def quota_left(unit: str) -> float | None:
    """What the current key's quotas on ``unit`` have left (less what this stream used since the last
    check); None when nothing limits it."""
    caller = _caller.get()
    if caller is None or unit not in caller.left:
        return None
    return max(0.0, caller.left[unit] - caller.unwritten(unit))


def forward_metadata(turn: int | None = None) -> list[tuple[str, str]]:
    """Metadata for a call made on behalf of the current RPC: its key, session and turn."""
    metadata = [("x-session-id", logs.session_id.get())]
    token = _credentials.get()
    if token:
        metadata.append(("authorization", f"Bearer {token}"))
    if turn is not None:
        metadata.append(("x-turn-id", str(turn)))
    return metadata
