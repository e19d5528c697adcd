"""The one place where exceptions become gRPC status codes."""

from __future__ import annotations

import logging

import grpc
from google.protobuf import any_pb2
from google.rpc import status_pb2
from grpc_status import rpc_status

from voicemesh.errors import VoiceMeshError
from voicemesh.v1 import common_pb2

log = logging.getLogger(__name__)


def error_detail(exc: VoiceMeshError) -> common_pb2.ErrorDetail:
    """The machine-readable detail of an error."""
    return common_pb2.ErrorDetail(reason=exc.reason, retryable=exc.retryable, model=exc.model, known=exc.known)


def to_status(exc: BaseException) -> tuple[grpc.StatusCode, str, common_pb2.ErrorDetail]:
    """Map an exception to (code, message, detail); unknown ones are INTERNAL."""
    if isinstance(exc, VoiceMeshError):
        return grpc.StatusCode[exc.code], exc.message, error_detail(exc)
    return (
        grpc.StatusCode.INTERNAL,
        f"internal error ({type(exc).__name__}); see the server log",
        common_pb2.ErrorDetail(reason="INTERNAL"),
    )


def rich_status(code: grpc.StatusCode, message: str, detail: common_pb2.ErrorDetail) -> grpc.Status:
    """A grpc.Status carrying ``detail`` as a google.rpc.Status detail."""
    packed = any_pb2.Any()
    packed.Pack(detail)
    return rpc_status.to_status(status_pb2.Status(code=code.value[0], message=message, details=[packed]))


def detail_of(error: grpc.RpcError) -> common_pb2.ErrorDetail | None:
    """Client side: the ErrorDetail of a failed call, if the server attached one."""
    status = rpc_status.from_call(error) if hasattr(error, "trailing_metadata") else None
    if status is None:
        return None
    for packed in status.details:
        detail = common_pb2.ErrorDetail()
        if packed.Unpack(detail):
            return detail
    return None


async def abort(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    """End the RPC with the status of ``exc`` (raises ``grpc.aio.AbortError``)."""
    code, message, detail = to_status(exc)
    if code is grpc.StatusCode.INTERNAL:
        log.error("internal error: %r", exc, exc_info=exc)
    else:
        log.info("request failed: %s: %s", code.name, message)
    status = rich_status(code, message, detail)
    retry_after_s = getattr(exc, "retry_after_s", None)
    if retry_after_s:  # when a busy server expects a slot to free (also in the message)
        status = _WithMetadata(status.code, status.details,
                               (*status.trailing_metadata, ("retry-after-ms", str(int(retry_after_s * 1000)))))
    await context.abort_with_status(status)


class _WithMetadata(grpc.Status):
    """A status with extra trailing metadata."""

    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: tuple):
        self.code, self.details, self.trailing_metadata = code, details, trailing_metadata
