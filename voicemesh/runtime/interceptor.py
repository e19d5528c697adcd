"""A server interceptor that gives every RPC the same treatment.

It maps exceptions to status codes (through ``status.abort``), counts
messages, errors and durations, binds the session id (``x-session-id``
metadata, or a fresh one) to the logs of the RPC, and runs every stream under
a ``StreamWatch`` (idle timeout, longest stream, usage and key checks as it goes).
A malformed ``x-session-id`` or ``x-turn-id`` is INVALID_ARGUMENT, and so is a
request that is not a valid protobuf message (corrupt wire format, a string that
is not UTF-8), instead of an internal error.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable

import grpc
from google.protobuf.message import DecodeError

from voicemesh.errors import InvalidInput
from voicemesh.runtime import admission, auth, logs, metrics, status
from voicemesh.runtime.limits import Limits
from voicemesh.runtime.load import Gate
from voicemesh.runtime.watch import StreamWatch

log = logging.getLogger(__name__)


def _session_id(context: grpc.aio.ServicerContext) -> str:
    """The client's session id if well formed, else a fresh one (``_check_ids`` refuses a malformed one)."""
    metadata = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
    try:
        return auth.session_of(metadata) or uuid.uuid4().hex[:12]
    except Exception:
        return uuid.uuid4().hex[:12]


def _check_ids(context: grpc.aio.ServicerContext) -> None:
    """INVALID_ARGUMENT for a malformed ``x-session-id``, ``x-turn-id`` or ``x-stream-id`` (the ledger stores them)."""
    metadata = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
    auth.session_of(metadata)
    auth.turn_of(metadata)
    auth.stream_of(metadata)


class _Malformed:
    """What a request that failed to parse becomes; the wrapper raises its error in the RPC."""

    def __init__(self, error: InvalidInput):
        self.error = error


def _tolerant(deserializer: Callable | None) -> Callable | None:
    """``deserializer``, returning a ``_Malformed`` instead of raising on bytes that do not parse.

    grpc calls the deserializer outside the servicer: its exception would end a stream as INTERNAL
    and a unary call as UNKNOWN, with a traceback in the log, for what is the client's bad input.
    """
    if deserializer is None:
        return None

    def parse(data: bytes):
        try:
            return deserializer(data)
        except DecodeError as exc:
            return _Malformed(InvalidInput(f"the request is not a valid protobuf message: {exc}"))

    return parse


def _parsed(request):
    """``request``, or raise INVALID_ARGUMENT if it did not parse."""
    if isinstance(request, _Malformed):
        raise request.error
    return request


class _Call:
    """Book-keeping of one RPC."""

    def __init__(self, service: str, method: str, context: grpc.aio.ServicerContext):
        self.service, self.method, self.context = service, method, context
        self.labels = (service, method)
        self.start = time.monotonic()
        self.first_sent = False
        self.finished = False
        # For the drain (voicemesh.runtime.drain): last message either way, the RPC's task, why it was cut.
        self.active, self.task, self.cut = self.start, None, None
        # Each RPC runs in a task of its own, so its context holds this id alone; nothing to reset
        # (a response generator may be finalized in another context, where a reset would fail).
        logs.session_id.set(_session_id(context))
        metrics.STREAMS_OPEN.labels(*self.labels).inc()

    def sent(self) -> None:
        self.active = time.monotonic()
        metrics.MESSAGES_OUT.labels(*self.labels).inc()
        if not self.first_sent:
            self.first_sent = True
            metrics.FIRST_RESPONSE_SECONDS.labels(*self.labels).observe(time.monotonic() - self.start)

    async def counted(self, requests: AsyncIterator) -> AsyncIterator:
        counter = metrics.MESSAGES_IN.labels(*self.labels)
        async for request in requests:
            self.active = time.monotonic()
            counter.inc()
            yield _parsed(request)

    def finish(self, code: grpc.StatusCode) -> None:
        if self.finished:
            return
        self.finished = True
        metrics.STREAMS_OPEN.labels(*self.labels).dec()
        metrics.RPC_SECONDS.labels(*self.labels).observe(time.monotonic() - self.start)
        metrics.RPCS.labels(*self.labels, code.name).inc()
        if code is not grpc.StatusCode.OK:
            metrics.ERRORS.labels(*self.labels, code.name).inc()


def _final_code(context: grpc.aio.ServicerContext, fallback: grpc.StatusCode) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return fallback


async def _close(responses: AsyncIterator, method: str) -> None:
    """Close a servicer's response generator now, in the RPC's context, so its ``finally`` runs
    there (with the session id and API key bound) rather than later from the garbage collector."""
    aclose = getattr(responses, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except Exception:  # the RPC already has its status; the servicer's cleanup failure is logged
        log.exception("%s: the servicer failed while closing", method)


async def _close_all(guarded: AsyncIterator | None, responses: AsyncIterator | None, method: str) -> None:
    for generator in (guarded, responses):
        if generator is not None:
            await _close(generator, method)


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    """Wraps unary-unary and stream-stream handlers of the VoiceMesh services."""

    def __init__(self, service: str, guard: auth.Guard | None = None, limits: Limits | None = None,
                 gate: Gate | None = None):
        self.service = service
        # Drain and load refusals of new streams, and the open streams a drain closes (voicemesh.runtime.load).
        self.gate = gate or Gate()
        # API keys, quotas and usage metering (voicemesh.runtime.auth); None when the server has no ledger.
        self.guard = guard
        # Open-stream and stream-duration limits (voicemesh.runtime.limits).
        self.limits = limits or Limits()

    async def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails):
        handler = await continuation(handler_call_details)
        if handler is None or not handler_call_details.method.startswith("/voicemesh."):
            return handler
        method = handler_call_details.method.rsplit("/", 1)[-1]
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._wrap_stream(handler.stream_stream, method),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler

    def _wrap_stream(self, behavior: Callable, method: str) -> Callable:
        async def wrapper(request_iterator, context):
            call = _Call(self.service, method, context)
            code = grpc.StatusCode.OK
            responses = guarded = None
            slot = None
            try:
                _check_ids(context)
                caller = await self._admit(request_iterator, context) if self.guard else None
                slot = await self._take_slot(request_iterator, caller)
                self.gate.open.add(call)
                # Slots of the backends (generation, decoding) are shared fairly among the keys.
                admission.owner.set(slot.key_id)
                limits = self.limits
                watch = StreamWatch(idle_s=limits.idle_timeout_s, deadline=slot.deadline, expired=slot.expired,
                                    every_s=limits.usage_interval_s, check=caller.checkpoint if caller else None)
                requests = watch.requests(call.counted(request_iterator))
                if caller is not None:
                    caller.stop = watch.stop
                responses = behavior(caller.requests(requests) if caller else requests, context)
                guarded = watch.guarded(responses)
                async for response in guarded:
                    if caller is not None:
                        await caller.observe(response)
                    call.sent()
                    yield response
            except asyncio.CancelledError:
                if call.cut is None:
                    code = grpc.StatusCode.CANCELLED
                    log.info("%s cancelled by the client or by shutdown", method)
                    raise
                code = status.to_status(call.cut)[0]  # closed by the drain: its status, not a bare cancel
                await _close_all(guarded, responses, method)
                guarded = responses = None
                call.finish(code)
                await status.abort(context, call.cut)
            except grpc.aio.AbortError:
                code = _final_code(context, grpc.StatusCode.UNKNOWN)
                raise
            except Exception as exc:
                code = status.to_status(exc)[0]
                # Stop the servicer first, then let the client finish writing before the status goes
                # out: a grpc-python client still writing when it arrives reports INTERNAL ("Internal
                # error from Core") in its place (grpc/grpc#36066). Briefly: a client streaming live
                # audio never stops writing, and its error must not wait.
                await _close_all(guarded, responses, method)
                guarded = responses = None
                await auth.drain(request_iterator, timeout_s=0.25)
                if slot is not None:
                    slot.release()
                call.finish(code)  # counted before the client can see the status
                await status.abort(context, exc)
            finally:
                self.gate.open.discard(call)
                if guarded is not None:
                    await _close(guarded, method)
                if responses is not None:
                    await _close(responses, method)
                if slot is not None:
                    slot.release()
                call.finish(code)

        return wrapper

    async def _take_slot(self, requests: AsyncIterator, caller: auth.Caller | None):
        try:
            self.gate.check()  # draining or overloaded: refused before it takes a slot
            return self.limits.admit(caller.key.id if caller is not None and caller.key is not None else "")
        except Exception:
            await auth.drain(requests)  # as in _admit: let the client finish writing, then refuse
            raise

    async def _admit(self, requests: AsyncIterator, context: grpc.aio.ServicerContext):
        try:
            return await self.guard.admit(context, new_stream=True)
        except Exception:
            # A grpc-python client still writing when the status arrives may report INTERNAL in its
            # place (grpc/grpc#36066): read what it sends until it half-closes (briefly), then refuse.
            await auth.drain(requests)
            raise

    def _wrap_unary(self, behavior: Callable, method: str) -> Callable:
        async def wrapper(request, context):
            call = _Call(self.service, method, context)
            code = grpc.StatusCode.OK
            try:
                _check_ids(context)
                if self.guard is not None:
                    await self.guard.admit(context, new_stream=False)
                response = await behavior(_parsed(request), context)
                call.sent()
                return response
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except grpc.aio.AbortError:
                code = _final_code(context, grpc.StatusCode.UNKNOWN)
                raise
            except Exception as exc:
                code = status.to_status(exc)[0]
                await status.abort(context, exc)
            finally:
                call.finish(code)

        return wrapper
