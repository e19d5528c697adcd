"""The names a client gives a call in its metadata: session, turn and stream (the ledger stores them)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping

from voicemesh.errors import InvalidInput

# What a client may name its session and turn (``x-session-id`` / ``x-turn-id``): the ledger stores both.
SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
MAX_TURN = 2**31 - 1


def session_of(metadata: Mapping[str, str]) -> str | None:
    """The ``x-session-id`` a client sent (None: none, the server makes one); INVALID_ARGUMENT if malformed."""
    value = metadata.get("x-session-id", "")
    if not value:
        return None
    if not SESSION_ID.fullmatch(value):
        raise InvalidInput("x-session-id must be 1-64 characters of A-Z a-z 0-9 . _ : - (starting with a letter or "
                           f"digit), got {value[:80]!r}")
    return value


def stream_of(metadata: Mapping[str, str]) -> str | None:
    """The ``x-stream-id`` a client named its stream with (None: none); INVALID_ARGUMENT if malformed."""
    value = metadata.get("x-stream-id", "")
    if not value:
        return None
    if not SESSION_ID.fullmatch(value):
        raise InvalidInput("x-stream-id must be 1-64 characters of A-Z a-z 0-9 . _ : - (starting with a letter or "
                           f"digit), got {value[:80]!r}")
    return value


def stream_record_id(stream_id: str) -> str:
    """The id of the usage record of the stream named ``stream_id`` (its service and its client agree on it)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"voicemesh-stream:{stream_id}").hex


def turn_of(metadata: Mapping[str, str]) -> int:
    """The ``x-turn-id`` a client sent (0 without one); INVALID_ARGUMENT unless a whole number 0..2**31-1."""
    value = metadata.get("x-turn-id", "").strip()
    if not value:
        return 0
    if not value.isdigit() or not value.isascii() or int(value) > MAX_TURN:
        raise InvalidInput(f"x-turn-id must be a whole number from 0 to {MAX_TURN}, got {value[:40]!r}")
    return int(value)
