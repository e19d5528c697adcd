"""API keys: create, check, revoke; the local key of ``voicemesh up``.

A key reads ``vm_<id>_<secret>``. The id is public (it names the key in the
ledger, in reports and in logs); the secret is shown once, at creation, and
the ledger keeps only ``sha256(salt + secret)`` with a random salt per key.
Clients send the key as ``authorization: Bearer <key>`` gRPC metadata.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Iterable
from pathlib import Path

from voicemesh.errors import InvalidInput, PermissionDenied, Unauthenticated
from voicemesh.metering.ledger import LedgerStore, open_store, state_dir
from voicemesh.metering.records import KeyRecord, Quota
from voicemesh.settings import environ

PREFIX = "vm"
KEY_ENV = "VOICEMESH_API_KEY"
KEY_FILE_ENV = "VOICEMESH_KEY_FILE"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


def create_key(
    store: LedgerStore, name: str, *, expires: float | None = None, quotas: Iterable[Quota] = ()
) -> tuple[KeyRecord, str]:
    """Store a new key; returns its record and the key text (shown once, never stored)."""
    if not name.strip():
        raise InvalidInput("a key needs a name")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    record = KeyRecord(id=key_id, name=name.strip(), salt=salt, hash=_digest(salt, secret), created=time.time(),
                       expires=expires, quotas=tuple(quotas))
    store.add_key(record)
    return record, f"{PREFIX}_{key_id}_{secret}"


def split_key(text: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key, else None."""
    parts = text.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def verify(store: LedgerStore, text: str | None, now: float | None = None) -> KeyRecord:
    """The record of a valid key; Unauthenticated if missing or unknown, PermissionDenied if revoked or expired."""
    parts = split_key(text or "")
    if parts is None:
        raise Unauthenticated("missing or malformed API key: send 'authorization: Bearer <key>' metadata")
    record = store.get_key(parts[0])
    # Compare against a dummy digest for unknown ids too, so timing does not tell ids apart.
    expected = record.hash if record else "0" * 64
    if not hmac.compare_digest(_digest(record.salt if record else "00", parts[1]), expected) or record is None:
        raise Unauthenticated("unknown API key")
    return require_active(record, now)


def require_active(record: KeyRecord, now: float | None = None) -> KeyRecord:
    """``record`` if it is active; PermissionDenied if it was revoked or has expired."""
    state = record.state(now)
    if state == "revoked":
        raise PermissionDenied(f"API key {record.id} ({record.name}) was revoked at {iso(record.revoked)}")
    if state == "expired":
        raise PermissionDenied(f"API key {record.id} ({record.name}) expired at {iso(record.expires)}")
    return record


def find_key(store: LedgerStore, id_or_name: str) -> KeyRecord:
    """A key by id, or by name when exactly one active key has it."""
    record = store.get_key(id_or_name)
    if record is not None:
        return record
    named = [k for k in store.list_keys() if k.name == id_or_name and k.state() == "active"]
    if len(named) == 1:
        return named[0]
    if not named:
        raise InvalidInput(f"no key with id or active name {id_or_name!r}")
    raise InvalidInput(f"{len(named)} active keys are named {id_or_name!r}; name one by id: "
                       + ", ".join(k.id for k in named))


def iso(timestamp: float | None) -> str:
    """UTC ISO 8601 text of an epoch time ('-' for None)."""
    if timestamp is None:
        return "-"
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str, *, now: float | None = None, future: bool = True) -> float:
    """Epoch seconds of ``30d``/``12h``/``15m``/``90s`` (from now, ahead if ``future`` else back) or an ISO date."""
    now = time.time() if now is None else now
    match = _DURATION.match(text.strip())
    if match:
        seconds = float(match.group(1)) * _SECONDS[match.group(2)]
        return now + seconds if future else now - seconds
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"not a time: {text!r} (use e.g. 30d, 12h, 2026-12-31 or 2026-12-31T18:00:00Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def key_file(path: str | Path | None = None) -> Path:
    """The key file: ``path``, else $VOICEMESH_KEY_FILE, else api_key in the state folder (~/.voicemesh)."""
    return Path(path or environ(KEY_FILE_ENV) or state_dir() / "api_key").expanduser()


def read_client_key(path: str | Path | None = None) -> str | None:
    """The key a client should send: $VOICEMESH_API_KEY, else the key file's content, else None."""
    if environ(KEY_ENV):
        return environ(KEY_ENV).strip()
    file = key_file(path)
    return file.read_text(encoding="utf-8").strip() or None if file.exists() else None


def ensure_local_key(ledger_url: str, path: str | Path | None = None, *, name: str = "local") -> str:
    """Create the ledger if needed and make sure ``path`` holds a valid key; returns the key.

    For ``voicemesh up``: a key already in the file is kept while the ledger
    accepts it; otherwise a new one is created and written with mode 0600.
    """
    file = key_file(path)
    store = open_store(ledger_url)
    try:
        if file.exists():
            try:
                verify(store, file.read_text(encoding="utf-8"))
                return file.read_text(encoding="utf-8").strip()
            except (Unauthenticated, PermissionDenied):
                pass  # stale (another ledger, revoked, expired): replace it
        _record, text = create_key(store, name)
    finally:
        store.close()
    write_key_file(file, text)
    return text


def write_key_file(path: str | Path, text: str) -> None:
    """Write a key to ``path``, readable by its owner only."""
    file = Path(path).expanduser()
    file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    os.chmod(file, 0o600)
