"""One error taxonomy for every service and backend.

Backends raise these (they never import grpc); the server runtime maps them to
gRPC status codes in one place (``voicemesh.runtime.status``). Anything else
that escapes a handler becomes INTERNAL with its traceback logged.
"""

from __future__ import annotations

from collections.abc import Iterable


class VoiceMeshError(Exception):
    """Base error: a gRPC status code name, a reason and a retryable flag."""

    code = "INTERNAL"
    reason = "INTERNAL"
    retryable = False

    def __init__(self, message: str, *, model: str = "", known: Iterable[str] = (), reason: str | None = None):
        super().__init__(message)
        self.message = message
        self.model = model
        self.known = list(known)
        if reason is not None:
            self.reason = reason


class InvalidInput(VoiceMeshError):
    """The request is malformed or out of range."""

    code = "INVALID_ARGUMENT"
    reason = "INVALID_INPUT"


class ModelNotFound(VoiceMeshError):
    """Unknown provider, model or voice; ``known`` lists what exists."""

    code = "NOT_FOUND"
    reason = "UNKNOWN_MODEL"


class Unauthenticated(VoiceMeshError):
    """Missing or wrong credentials."""

    code = "UNAUTHENTICATED"
    reason = "UNAUTHENTICATED"


class PermissionDenied(VoiceMeshError):
    """Credentials are known but may not do this (revoked, expired)."""

    code = "PERMISSION_DENIED"
    reason = "PERMISSION_DENIED"


class ResourceExhausted(VoiceMeshError):
    """Admission control, rate limit or quota refused the request."""

    code = "RESOURCE_EXHAUSTED"
    reason = "RESOURCE_EXHAUSTED"
    retryable = True


class Unavailable(VoiceMeshError):
    """A backend or remote API cannot be reached or failed transiently."""

    code = "UNAVAILABLE"
    reason = "UNAVAILABLE"
    retryable = True


class DeadlineExceeded(VoiceMeshError):
    """A backend or remote API did not answer in time."""

    code = "DEADLINE_EXCEEDED"
    reason = "TIMEOUT"
    retryable = True


class FailedPrecondition(VoiceMeshError):
    """The request is valid but not in the stream's current state."""

    code = "FAILED_PRECONDITION"
    reason = "FAILED_PRECONDITION"


class MissingExtra(FailedPrecondition):
    """An optional engine is not installed; the message names the extra."""

    reason = "MISSING_EXTRA"

    def __init__(self, module: str, extra: str):
        super().__init__(
            f"the Python module {module!r} is not installed; install it with: pip install 'voicemesh[{extra}]'"
        )


def require_module(module: str, extra: str) -> None:
    """Raise ``MissingExtra`` unless ``module`` can be imported."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingExtra(module, extra)


def error_for_code(code: str, message: str, **kwargs) -> VoiceMeshError:
    """An error of the class that carries gRPC status ``code`` (INTERNAL's base class for unknown ones)."""
    classes = {cls.code: cls for cls in (InvalidInput, ModelNotFound, Unauthenticated, PermissionDenied,
                                         ResourceExhausted, Unavailable, DeadlineExceeded, FailedPrecondition)}
    return classes.get(code, VoiceMeshError)(message, **kwargs)
