"""Helpers every streaming servicer uses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from voicemesh.errors import InvalidInput


async def read_config(requests: AsyncIterator[Any], field: str = "config", oneof: str = "request") -> Any:
    """Read the first message of a config-first stream and return its config.

    Raises INVALID_ARGUMENT when the stream ends first or the first message
    carries anything else.
    """
    try:
        first = await anext(requests)
    except StopAsyncIteration:
        raise InvalidInput(f"the stream ended before its first message; the first message must be a {field}") from None
    kind = first.WhichOneof(oneof)
    if kind != field:
        raise InvalidInput(f"the first message must be a {field}, got {kind or 'an empty message'}")
    return getattr(first, field)


def reject_second_config(kind: str | None, field: str = "config") -> None:
    """Raise INVALID_ARGUMENT for a config sent after the first message."""
    if kind == field:
        raise InvalidInput(f"only the first message may be a {field}")
    if kind is None:
        raise InvalidInput("empty message: set one field of the request")
