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
``record_unsent(usage)`` so the work done is still metered.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import grpc
from google.protobuf.message import Message

from voicemesh.errors import PermissionDenied, Unauthenticated
from voicemesh.metering import keys, quotas
from voicemesh.metering.ledger import Ledger, redact_url
from voicemesh.metering.prices import PriceTable
from voicemesh.metering.records import KeyRecord, UsageRecord
from voicemesh.runtime import logs
from voicemesh.runtime.audit import FailedAuth

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
class Caller:
    """One admitted RPC: who calls, in which session and turn."""

    guard: Guard
    key: KeyRecord | None
    session_id: str
    turn: int

    async def requests(self, requests: AsyncIterator[Message]) -> AsyncIterator[Message]:
        """The stream's requests; one that starts a turn first passes the key and quota check, and the
        usage from then on is recorded under the turn it names (if it names one)."""
        async for request in requests:
            field = TURN_REQUESTS.get(request.DESCRIPTOR.full_name)
            if field and request.WhichOneof("request") == field:
                if self.key is not None:
                    await self.guard.check(self.key)
                self.turn = getattr(getattr(request, field), "turn_id", 0) or self.turn
            yield request

    async def observe(self, response: Message) -> None:
        """Commit the Usage ``response`` carries (if any) before it is sent."""
        usage = usage_of(response)
        if usage is not None:
            await self.record(usage)

    async def record(self, usage: Message) -> None:
        """Commit one voicemesh.v1.Usage of this RPC to the ledger.

        The write is a task of the guard: cancelling the RPC while it commits
        does not cancel the write.
        """
        await asyncio.shield(self.guard.keep(self.guard.ledger.record(self.usage_record(usage))))

    def usage_record(self, usage: Message) -> UsageRecord:
        """The ledger record of a Usage of this RPC (stamped now, with a fresh record id)."""
        return UsageRecord(
            key_id=self.key.id if self.key else "", session_id=self.session_id, service=self.guard.service,
            model=usage.model, turn=self.turn, audio_seconds_in=usage.audio_seconds_in,
            audio_seconds_out=usage.audio_seconds_out, input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens, cached_tokens=usage.cached_tokens, characters=usage.characters,
        )


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
        if self.auth:
            try:
                key = await self.ledger.call(keys.verify, token)
            except (Unauthenticated, PermissionDenied) as exc:  # not a ledger outage
                await self.failures.refused(context.peer(), token, exc)
                raise
            self.failures.admitted(context.peer())
            if new_stream:
                await self.ledger.call(quotas.check, key, self.prices)
        try:
            turn = int(metadata.get("x-turn-id", "0") or 0)
        except ValueError:
            turn = 0
        caller = Caller(self, key, logs.session_id.get(), turn)
        current_key.set(key)
        _credentials.set(token)
        _caller.set(caller)
        return caller

    async def check(self, key: KeyRecord, pending: Mapping[str, float] | None = None) -> None:
        """Refuse a key that was revoked or expired since, or whose quota is used up."""

        def _check(store) -> None:
            fresh = store.get_key(key.id)
            if fresh is None:
                raise Unauthenticated(f"API key {key.id} no longer exists")
            quotas.check(store, keys.require_active(fresh), self.prices, pending=pending)

        await self.ledger.call(_check)


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
        caller.guard.keep(caller.guard.ledger.record(caller.usage_record(usage)))


def forward_metadata(turn: int | None = None) -> list[tuple[str, str]]:
    """Metadata for a call made on behalf of the current RPC: its key, session and turn."""
    metadata = [("x-session-id", logs.session_id.get())]
    token = _credentials.get()
    if token:
        metadata.append(("authorization", f"Bearer {token}"))
    if turn is not None:
        metadata.append(("x-turn-id", str(turn)))
    return metadata
