"""API keys on a real SQLite ledger and a real PostgreSQL one: hashing, verification states, the local key of ``voicemesh up``."""

from __future__ import annotations

import stat
import time

import pytest

from tests.metering.helpers import run_sql
from voicemesh.errors import InvalidInput, PermissionDenied, Unauthenticated
from voicemesh.metering import keys
from voicemesh.metering.ledger import open_store
from voicemesh.metering.records import Quota


@pytest.fixture
def store(ledger_url):
    store = open_store(ledger_url)
    yield store
    store.close()


def test_key_is_stored_only_as_salted_hash(store, ledger_url, tmp_path):
    record, text = keys.create_key(store, "alice", quotas=[Quota("characters", 100, "day")])
    secret = keys.split_key(text)[1]
    assert text.startswith(f"vm_{record.id}_") and len(secret) >= 40
    stored = store.get_key(record.id)
    assert stored.quotas == (Quota("characters", 100, "day"),)
    assert secret not in stored.hash and stored.salt
    other, other_text = keys.create_key(store, "bob")
    assert other.salt != record.salt
    rows = repr(run_sql(ledger_url, "SELECT * FROM keys"))
    assert record.hash in rows and secret not in rows and keys.split_key(other_text)[1] not in rows
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("ledger.db*"))  # the SQLite files, pages and all
    assert secret.encode() not in raw and keys.split_key(other_text)[1].encode() not in raw
    assert keys.verify(store, text).id == record.id
    assert keys.verify(store, f"  {text}\n").id == record.id


@pytest.mark.parametrize("bad", [None, "", "Bearer", "vm_", "sk-123", "vm_nope_secret"])
def test_missing_malformed_or_unknown_key_is_unauthenticated(store, bad):
    keys.create_key(store, "alice")
    with pytest.raises(Unauthenticated):
        keys.verify(store, bad)


def test_wrong_secret_is_unauthenticated(store):
    record, text = keys.create_key(store, "alice")
    with pytest.raises(Unauthenticated, match="unknown API key"):
        keys.verify(store, text[:-2] + ("AA" if not text.endswith("AA") else "BB"))


def test_revoked_and_expired_keys_are_permission_denied(store):
    revoked, revoked_text = keys.create_key(store, "gone")
    assert store.revoke_key(revoked.id, time.time())
    assert not store.revoke_key(revoked.id, time.time()), "revoking twice changes nothing"
    with pytest.raises(PermissionDenied, match="revoked"):
        keys.verify(store, revoked_text)
    expired, expired_text = keys.create_key(store, "old", expires=time.time() - 1)
    with pytest.raises(PermissionDenied, match="expired"):
        keys.verify(store, expired_text)
    later, later_text = keys.create_key(store, "later", expires=time.time() + 3600)
    assert keys.verify(store, later_text).id == later.id
    with pytest.raises(PermissionDenied, match="expired"):
        keys.verify(store, later_text, now=time.time() + 7200)


def test_find_key_by_id_or_unique_active_name(store):
    a, _ = keys.create_key(store, "app")
    assert keys.find_key(store, a.id) == a
    assert keys.find_key(store, "app") == a
    b, _ = keys.create_key(store, "app")
    with pytest.raises(InvalidInput, match="2 active keys"):
        keys.find_key(store, "app")
    store.revoke_key(a.id, time.time())
    assert keys.find_key(store, "app").id == b.id
    with pytest.raises(InvalidInput, match="no key"):
        keys.find_key(store, "nobody")


def test_parse_time():
    now = 1_000_000.0
    assert keys.parse_time("30d", now=now) == now + 30 * 86400
    assert keys.parse_time("90m", now=now, future=False) == now - 5400
    assert keys.parse_time("2026-01-02") == keys.parse_time("2026-01-02T00:00:00Z")
    assert keys.iso(keys.parse_time("2026-01-02T03:04:05+01:00")) == "2026-01-02T02:04:05Z"
    with pytest.raises(InvalidInput, match="not a time"):
        keys.parse_time("tomorrow")


def test_ensure_local_key_creates_reuses_and_replaces(tmp_path, monkeypatch):
    monkeypatch.delenv(keys.KEY_ENV, raising=False)
    url, path = f"sqlite:///{tmp_path}/state/ledger.db", tmp_path / "state" / "api_key"
    first = keys.ensure_local_key(url, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == first
    assert keys.ensure_local_key(url, path) == first, "a valid key is kept"
    store = open_store(url)
    assert keys.verify(store, first).name == "local"
    store.revoke_key(keys.split_key(first)[0], time.time())
    store.close()
    second = keys.ensure_local_key(url, path)
    assert second != first and path.read_text().strip() == second
    # another ledger does not know the key: replaced too
    third = keys.ensure_local_key(f"sqlite:///{tmp_path}/other.db", path)
    assert third not in (first, second)
    assert keys.read_client_key(path) == third
    monkeypatch.setenv(keys.KEY_ENV, "vm_env_key")
    assert keys.read_client_key(path) == "vm_env_key"
    monkeypatch.delenv(keys.KEY_ENV)
    monkeypatch.setenv(keys.KEY_FILE_ENV, str(path))
    assert keys.read_client_key() == third
    assert keys.read_client_key(tmp_path / "missing") is None


def test_defaults_follow_the_state_folder_of_voicemesh_up(tmp_path, monkeypatch):
    from voicemesh.metering.ledger import default_url, sqlite_path

    monkeypatch.delenv("VOICEMESH_LEDGER", raising=False)
    monkeypatch.delenv(keys.KEY_FILE_ENV, raising=False)
    monkeypatch.delenv(keys.KEY_ENV, raising=False)
    monkeypatch.setenv("VOICEMESH_STATE_DIR", str(tmp_path / "state"))
    assert sqlite_path(default_url()) == tmp_path / "state" / "ledger.db"
    key = keys.ensure_local_key(default_url())
    assert (tmp_path / "state" / "api_key").read_text().strip() == key == keys.read_client_key()
