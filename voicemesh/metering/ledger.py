"""The ledger: API keys and usage records in a database named by a URL.

``open_store(url)`` returns a ``LedgerStore`` (blocking calls, one thread);
``sqlite:///path/ledger.db`` (or a plain path) is the default, a SQLite file
in WAL mode with one transaction per record. A server database (PostgreSQL)
is added by writing another class with the same methods and naming its
scheme in ``STORES``; nothing outside this module touches SQL.

``Ledger`` is the asyncio face used by servers: every call runs on one
worker thread that owns the connection, so nothing blocks the event loop. A
usage write is retried and, if the database still refuses it, appended to a
spool file next to the ledger and logged as an error; the spool is replayed
into the ledger the next time it is opened (record ids make that idempotent).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import json
import logging
import os
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from voicemesh.metering.records import UNITS, KeyRecord, Quota, UsageRecord

log = logging.getLogger(__name__)
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    salt TEXT NOT NULL,
    hash TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL,
    revoked REAL,
    quotas TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS usage (
    id TEXT PRIMARY KEY,
    time REAL NOT NULL,
    key_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    service TEXT NOT NULL,
    model TEXT NOT NULL,
    turn INTEGER NOT NULL,
    audio_seconds_in REAL NOT NULL,
    audio_seconds_out REAL NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    characters INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_key_time ON usage (key_id, time);
CREATE TABLE IF NOT EXISTS usage_daily (
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    day REAL NOT NULL,
    audio_seconds_in REAL NOT NULL,
    audio_seconds_out REAL NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    characters INTEGER NOT NULL,
    PRIMARY KEY (key_id, day, model)
);
"""
_DAY_S = 86400
_USAGE_COLUMNS = ("id", "time", "key_id", "session_id", "service", "model", "turn", *UNITS)
_KEY_COLUMNS = ("id", "name", "salt", "hash", "created", "expires", "revoked", "quotas")


class LedgerStore(Protocol):
    """What a ledger database does. Calls block; use one store per thread."""

    def add_key(self, key: KeyRecord) -> None: ...
    def get_key(self, key_id: str) -> KeyRecord | None: ...
    def list_keys(self) -> list[KeyRecord]: ...
    def revoke_key(self, key_id: str, when: float) -> bool: ...
    def add_usage(self, record: UsageRecord) -> bool: ...
    def usage(self, *, key_id: str | None = None, since: float | None = None) -> list[UsageRecord]: ...
    def totals(self, key_id: str, since: float | None) -> dict[str, dict[str, float]]: ...
    def close(self) -> None: ...


def _key_from_row(row: Sequence[Any]) -> KeyRecord:
    values = dict(zip(_KEY_COLUMNS, row, strict=True))
    values["quotas"] = tuple(Quota(**q) for q in json.loads(values["quotas"]))
    return KeyRecord(**values)


class SqliteStore:
    """A ledger in one SQLite file (WAL, synchronous=FULL, one transaction per write)."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we open every transaction ourselves with BEGIN IMMEDIATE.
        self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._backfill_daily()

    def _backfill_daily(self) -> None:
        """Build the per-day totals of a ledger written before they existed."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if self._db.execute("SELECT 1 FROM usage_daily LIMIT 1").fetchone() is None:
                sums = ", ".join(f"SUM({unit})" for unit in UNITS)
                self._db.execute(f"INSERT INTO usage_daily (key_id, model, day, {', '.join(UNITS)}) "
                                 f"SELECT key_id, model, CAST(time / {_DAY_S} AS INTEGER) * {_DAY_S}, {sums} "
                                 "FROM usage GROUP BY 1, 2, 3")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _write(self, sql: str, params: Sequence[Any], *then: tuple[str, Sequence[Any]]) -> int:
        """One transaction: ``sql``, and the ``then`` statements only if it changed a row."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            changed = self._db.execute(sql, params).rowcount
            if changed:
                for statement, values in then:
                    self._db.execute(statement, values)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return changed

    def add_key(self, key: KeyRecord) -> None:
        values = dataclasses.asdict(key)
        values["quotas"] = json.dumps([q.to_dict() for q in key.quotas])
        self._write(f"INSERT INTO keys ({', '.join(_KEY_COLUMNS)}) VALUES ({', '.join('?' * len(_KEY_COLUMNS))})",
                    [values[c] for c in _KEY_COLUMNS])

    def get_key(self, key_id: str) -> KeyRecord | None:
        row = self._db.execute(f"SELECT {', '.join(_KEY_COLUMNS)} FROM keys WHERE id = ?", (key_id,)).fetchone()
        return _key_from_row(row) if row else None

    def list_keys(self) -> list[KeyRecord]:
        rows = self._db.execute(f"SELECT {', '.join(_KEY_COLUMNS)} FROM keys ORDER BY created").fetchall()
        return [_key_from_row(row) for row in rows]

    def revoke_key(self, key_id: str, when: float) -> bool:
        return self._write("UPDATE keys SET revoked = ? WHERE id = ? AND revoked IS NULL", (when, key_id)) == 1

    def add_usage(self, record: UsageRecord) -> bool:
        """Insert ``record`` and add it to its day's totals; False when a record with its id is already there."""
        values = dataclasses.asdict(record)
        sql = (f"INSERT INTO usage ({', '.join(_USAGE_COLUMNS)}) VALUES ({', '.join('?' * len(_USAGE_COLUMNS))}) "
               "ON CONFLICT (id) DO NOTHING")
        daily = (f"INSERT INTO usage_daily (key_id, model, day, {', '.join(UNITS)}) VALUES (?, ?, ?, "
                 f"{', '.join('?' * len(UNITS))}) ON CONFLICT (key_id, day, model) DO UPDATE SET "
                 + ", ".join(f"{unit} = {unit} + excluded.{unit}" for unit in UNITS))
        day = record.time // _DAY_S * _DAY_S
        return self._write(sql, [values[c] for c in _USAGE_COLUMNS],
                           (daily, [record.key_id, record.model, day, *(values[u] for u in UNITS)])) == 1

    def usage(self, *, key_id: str | None = None, since: float | None = None) -> list[UsageRecord]:
        sql = f"SELECT {', '.join(_USAGE_COLUMNS)} FROM usage WHERE 1 = 1"
        params: list[Any] = []
        if key_id is not None:
            sql += " AND key_id = ?"
            params.append(key_id)
        if since is not None:
            sql += " AND time >= ?"
            params.append(since)
        rows = self._db.execute(sql + " ORDER BY time, id", params).fetchall()
        return [UsageRecord(**dict(zip(_USAGE_COLUMNS, row, strict=True))) for row in rows]

    def totals(self, key_id: str, since: float | None) -> dict[str, dict[str, float]]:
        """model -> unit -> sum, for one key since ``since`` (None: ever).

        A ``since`` on a UTC day boundary (every quota period) reads the per-day
        totals; any other reads the records.
        """
        sums = ", ".join(f"SUM({unit})" for unit in UNITS)
        if since is None or since % _DAY_S == 0:
            table, column = "usage_daily", "day"
        else:
            table, column = "usage", "time"
        rows = self._db.execute(
            f"SELECT model, {sums} FROM {table} WHERE key_id = ? AND {column} >= ? GROUP BY model",
            (key_id, since if since is not None else float("-inf")),
        ).fetchall()
        return {row[0]: dict(zip(UNITS, row[1:], strict=True)) for row in rows}

    def close(self) -> None:
        self._db.close()


def _sqlite(url: str) -> SqliteStore:
    return SqliteStore(sqlite_path(url))


# URL scheme -> store factory. A PostgreSQL store would be one more entry.
STORES: dict[str, Callable[[str], LedgerStore]] = {"sqlite": _sqlite}


LEDGER_ENV = "VOICEMESH_LEDGER"


def state_dir() -> Path:
    """$VOICEMESH_STATE_DIR, else ~/.voicemesh (where ``voicemesh up`` keeps its state)."""
    return Path(os.environ.get("VOICEMESH_STATE_DIR") or Path.home() / ".voicemesh").expanduser()


def default_url() -> str:
    """$VOICEMESH_LEDGER, else ledger.db in the state folder."""
    return os.environ.get(LEDGER_ENV) or f"sqlite:///{state_dir() / 'ledger.db'}"


def sqlite_path(url: str) -> Path:
    """The file of ``sqlite:///abs/path.db`` (also ``sqlite:////abs/path.db``), ``sqlite://rel.db`` or a path."""
    if not url.startswith("sqlite://"):
        return Path(url).expanduser()
    rest = url[len("sqlite://"):]
    return Path("/" + rest.lstrip("/") if rest.startswith("/") else rest).expanduser()


def open_store(url: str) -> LedgerStore:
    """Open (and create if needed) the ledger at ``url``."""
    scheme = url.split("://", 1)[0] if "://" in url else "sqlite"
    factory = STORES.get(scheme)
    if factory is None:
        raise ValueError(f"unsupported ledger URL scheme {scheme!r} (supported: {', '.join(STORES)})")
    return factory(url)


def spool_path(url: str) -> Path:
    """Where usage records wait when the ledger refuses them."""
    if "://" not in url or url.startswith("sqlite://"):
        return sqlite_path(url).with_name(sqlite_path(url).name + ".spool.jsonl")
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"voicemesh-ledger-{digest}.spool.jsonl"


def spool(path: Path, record: UsageRecord) -> None:
    """Append ``record`` to the spool file and fsync it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(dataclasses.asdict(record)) + "\n")
        f.flush()
        os.fsync(f.fileno())


def replay_spool(store: LedgerStore, path: Path) -> int:
    """Move spooled records into the ledger; returns how many were new.

    The spool is first renamed to a name of this process (atomic: writers then
    start a new spool); files left under such names by a replay that died are
    replayed too. Record ids make a record replayed twice count once.
    """
    if path.exists():
        os.replace(path, path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}"))
    added = 0
    for claimed in sorted(path.parent.glob(f"{path.name}.*")):
        try:
            lines = claimed.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            continue  # another process replayed it
        try:
            for line in filter(str.strip, lines):
                added += store.add_usage(UsageRecord(**json.loads(line)))
        except Exception as exc:  # keep the records for the next replay, and say so
            log.error("replaying %s into the ledger failed (%s); its records stay spooled", claimed, exc)
            continue
        claimed.unlink(missing_ok=True)
    if added:
        log.warning("replayed %d spooled usage record(s) from %s into the ledger", added, path)
    return added


class Ledger:
    """Asyncio access to a ledger: one worker thread owns the store."""

    RETRY_DELAYS_S = (0.05, 0.25, 1.0)

    def __init__(self, url: str):
        self.url = url
        self.spool = spool_path(url)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger")
        self._store: LedgerStore | None = None

    async def open(self) -> Ledger:
        def _open() -> None:
            self._store = open_store(self.url)
            replay_spool(self._store, self.spool)

        await asyncio.get_running_loop().run_in_executor(self._executor, _open)
        return self

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(store, *args, **kwargs)`` on the ledger thread."""
        if self._store is None:
            raise RuntimeError("ledger is not open")
        work = functools.partial(fn, self._store, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    async def record(self, record: UsageRecord) -> bool:
        """Commit ``record``; True once it is in the ledger, False if it had to be spooled."""
        error: Exception | None = None
        def _add(store: LedgerStore) -> None:
            store.add_usage(record)
            if self.spool.exists():  # the ledger takes writes again: bring the spooled ones in
                replay_spool(store, self.spool)

        for delay in (*self.RETRY_DELAYS_S, None):
            try:
                await self.call(_add)
                return True
            except Exception as exc:  # retried, then spooled: never dropped
                error = exc
                log.warning("ledger write of usage record %s failed: %s", record.id, exc)
                if delay is not None:
                    await asyncio.sleep(delay)
        await asyncio.to_thread(spool, self.spool, record)
        log.error("ledger %s refused usage record %s (%s); spooled to %s, replayed on next open",
                  redact_url(self.url), record.id, error, self.spool)
        return False

    async def close(self) -> None:
        if self._store is not None:
            await self.call(lambda store: store.close())
            self._store = None
        self._executor.shutdown(wait=True)


def redact_url(url: str) -> str:
    """``url`` without a password, for logs."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"
