"""Mesh errors as OpenAI's: HTTP status, ``type``, ``code``, ``param`` and the retry headers.

OpenAI's SDKs branch on these: a 429 is retried after ``Retry-After`` / ``retry-after-ms``
unless ``x-should-retry: false`` says a retry cannot help (a used-up quota), ``invalid_api_key``
and ``model_not_found`` are what their users search for. The gRPC services speak of
``authorization`` metadata; an HTTP caller is told about its ``Authorization`` header instead.
"""

from __future__ import annotations

import logging

import grpc
from starlette.responses import JSONResponse

from voicemesh.errors import InvalidInput, ModelNotFound
from voicemesh.gateway.openai_format import error_body, http_error
from voicemesh.runtime.status import detail_of, to_status

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1  # a refused stream slot frees within a generation or two: ask the client back soon
# gRPC status -> OpenAI's error code
CODES = {
    grpc.StatusCode.NOT_FOUND: "model_not_found",
    grpc.StatusCode.UNAUTHENTICATED: "invalid_api_key",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "rate_limit_exceeded",
}


def http_message(code: grpc.StatusCode, message: str) -> str:
    """``message`` as an HTTP caller should read it (headers, not gRPC metadata)."""
    if code is grpc.StatusCode.UNAUTHENTICATED:
        message = message.replace("'authorization: Bearer <key>' metadata",
                                  "the HTTP header 'Authorization: Bearer <key>'")
        if "Authorization" not in message:
            message = f"{message} (from the Authorization header: send 'Authorization: Bearer <key>')"
    return message


def status_error(code: grpc.StatusCode, message: str, *, reason: str = "", param: str | None = None,
                 retryable: bool = True) -> tuple[int, dict, dict[str, str]]:
    """(HTTP status, OpenAI error body, headers) for a gRPC status."""
    status, kind = http_error(code)
    headers: dict[str, str] = {}
    error_code = CODES.get(code, code.name.lower())
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        if reason == "QUOTA_EXCEEDED" or not retryable:
            kind = error_code = "insufficient_quota"
            headers["x-should-retry"] = "false"
        else:
            headers.update({"retry-after": str(RETRY_AFTER_S), "retry-after-ms": str(RETRY_AFTER_S * 1000)})
    return status, error_body(http_message(code, message), kind, error_code, param), headers


def exception_error(exc: BaseException) -> tuple[int, dict, dict[str, str]]:
    """(HTTP status, OpenAI error body, headers) for an exception: a failed gRPC call or a mesh error."""
    if isinstance(exc, grpc.aio.AioRpcError):
        detail = detail_of(exc)
        return status_error(exc.code(), exc.details() or exc.code().name, reason=detail.reason if detail else "",
                            retryable=detail.retryable if detail else True)
    code, message, detail = to_status(exc)
    if code is grpc.StatusCode.INTERNAL:
        log.error("gateway request failed", exc_info=exc)
    param = exc.reason if isinstance(exc, InvalidInput) and exc.reason != InvalidInput.reason else None
    if isinstance(exc, ModelNotFound):
        param = "model"
    return status_error(code, message, reason=detail.reason, param=param, retryable=detail.retryable)


def error_response(exc: BaseException) -> JSONResponse:
    """An OpenAI-style error response for any exception."""
    status, body, headers = exception_error(exc)
    return JSONResponse(body, status_code=status, headers=headers)
