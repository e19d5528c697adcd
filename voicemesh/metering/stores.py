"""The ledger's SQL: one ``SqlStore`` for every database, a subclass per dialect.

``SqliteStore`` keeps the ledger in one SQLite file (WAL); ``PostgresStore`` in
one PostgreSQL database that every replica of a deployment shares. Both create
the same tables and run the same statements, so they give the same results;
a subclass only says how to connect and how its SQL differs. ``ledger.py``
picks one by URL; nothing else touches SQL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from voicemesh.errors import Unavailable, require_module
from voicemesh.metering.records import UNITS, KeyRecord, Quota, UsageRecord
from voicemesh.private import private_file

log = logging.getLogger(__name__)

# The same tables in every dialect; {text}, {real} and {integer} are the dialect's column types.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id {text} PRIMARY KEY,
    name {text} NOT NULL,
    salt {text} NOT NULL,
    hash {text} NOT NULL,
    created {real} NOT NULL,
    expires {real},
    revoked {real},
    quotas {text} NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS usage (
    id {text} PRIMARY KEY,
    time {real} NOT NULL,
    key_id {text} NOT NULL,
    session_id {text} NOT NULL,
    service {text} NOT NULL,
    model {text} NOT NULL,
    turn {integer} NOT NULL,
    audio_seconds_in {real} NOT NULL,
    audio_seconds_out {real} NOT NULL,
    input_tokens {integer} NOT NULL,
    output_tokens {integer} NOT NULL,
    cached_tokens {integer} NOT NULL,
    characters {integer} NOT NULL,
    video_seconds_out {real} NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS usage_key_time ON usage (key_id, time);
CREATE TABLE IF NOT EXISTS usage_daily (
    key_id {text} NOT NULL,
    model {text} NOT NULL,
    day {real} NOT NULL,
    audio_seconds_in {real} NOT NULL,
    audio_seconds_out {real} NOT NULL,
    input_tokens {integer} NOT NULL,
    output_tokens {integer} NOT NULL,
    cached_tokens {integer} NOT NULL,
    characters {integer} NOT NULL,
    video_seconds_out {real} NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, day, model)
)
"""
_DAY_S = 86400
_USAGE_COLUMNS = ("id", "time", "key_id", "session_id", "service", "model", "turn", *UNITS)
_ADDED_UNITS = ("video_seconds_out",)  # units added after the first schema (columns with a default of 0)
_INTEGER_UNITS = ("input_tokens", "output_tokens", "cached_tokens", "characters")
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


class SqlStore:
    """The ledger's SQL, shared by every database; a subclass gives its dialect.

    The dialect: ``_connect`` (a DB-API connection in autocommit mode, so that
    every write is one explicit transaction), the placeholder ``PARAM``, the
    statement that opens a write transaction ``BEGIN``, the column ``TYPES``,
    ``DAY_START`` (the UTC day of ``time`` in SQL) and ``SCHEMA_LOCK`` (run
    first in the transaction that creates the tables).
    """

    PARAM = "?"
    BEGIN = "BEGIN"
    OUTAGES: tuple[type[BaseException], ...] = ()  # errors that mean the database is unreachable or busy
    TYPES = {"text": "TEXT", "real": "REAL", "integer": "INTEGER"}
    DAY_START = f"CAST(time / {_DAY_S} AS INTEGER) * {_DAY_S}"
    SCHEMA_LOCK: str | None = None
    LOCK_ROW = ""  # what locks a selected row until the transaction ends (SQLite's BEGIN IMMEDIATE locks all)

    def __init__(self) -> None:
        self._db = self._connect()
        self._create()

    def _connect(self) -> Any:
        raise NotImplementedError

    def _connection(self) -> Any:
        """The open connection (a subclass may reconnect here)."""
        return self._db

    def _params(self, count: int) -> str:
        return ", ".join([self.PARAM] * count)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        """One transaction on the connection it yields: committed, or rolled back on any error."""
        db = self._connection()
        db.execute(self.BEGIN)
        try:
            yield db
        except BaseException:
            if not getattr(db, "closed", False):  # a lost server connection has nothing left to roll back
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _create(self) -> None:
        """Create the tables if needed and build the per-day totals of a ledger written before they existed."""
        with self._transaction() as db:
            if self.SCHEMA_LOCK:
                db.execute(self.SCHEMA_LOCK)
            for statement in _SCHEMA.format(**self.TYPES).split(";"):
                db.execute(statement)
            for table in ("usage", "usage_daily"):  # a ledger written before a unit existed gets its column
                columns = {c[0] for c in db.execute(f"SELECT * FROM {table} LIMIT 0").description}
                for unit in _ADDED_UNITS:
                    if unit not in columns:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {unit} {self.TYPES['real']} NOT NULL DEFAULT 0")
            if db.execute("SELECT 1 FROM usage_daily LIMIT 1").fetchone() is None:
                sums = ", ".join(f"SUM({unit})" for unit in UNITS)
                db.execute(f"INSERT INTO usage_daily (key_id, model, day, {', '.join(UNITS)}) "
                           f"SELECT key_id, model, {self.DAY_START}, {sums} FROM usage GROUP BY 1, 2, 3")

    def _write(self, sql: str, params: Sequence[Any], *then: tuple[str, Sequence[Any]]) -> int:
        """One transaction: ``sql``, and the ``then`` statements only if it changed a row."""
        with self._transaction() as db:
            changed = db.execute(sql, params).rowcount
            if changed:
                for statement, values in then:
                    db.execute(statement, values)
        return changed

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        return self._connection().execute(sql, params).fetchall()

    def add_key(self, key: KeyRecord) -> None:
        values = dataclasses.asdict(key)
        values["quotas"] = json.dumps([q.to_dict() for q in key.quotas])
        self._write(f"INSERT INTO keys ({', '.join(_KEY_COLUMNS)}) VALUES ({self._params(len(_KEY_COLUMNS))})",
                    [values[c] for c in _KEY_COLUMNS])

    def get_key(self, key_id: str) -> KeyRecord | None:
        rows = self._read(f"SELECT {', '.join(_KEY_COLUMNS)} FROM keys WHERE id = {self.PARAM}", (key_id,))
        return _key_from_row(rows[0]) if rows else None

    def list_keys(self) -> list[KeyRecord]:
        return [_key_from_row(row) for row in self._read(f"SELECT {', '.join(_KEY_COLUMNS)} FROM keys ORDER BY created")]

    def revoke_key(self, key_id: str, when: float) -> bool:
        sql = f"UPDATE keys SET revoked = {self.PARAM} WHERE id = {self.PARAM} AND revoked IS NULL"
        return self._write(sql, (when, key_id)) == 1

    def add_usage(self, record: UsageRecord) -> bool:
        """Insert ``record`` and add it to its day's totals; False when that record (or a later version of it)
        is already there.

        A long stream's usage is written as it grows: each version has the same id and a later ``time``, and
        replaces the one before (its units leave their day's totals and the new ones join theirs). An older
        or the same version written again (a retry, a replayed spool) changes nothing.
        """
        values = dataclasses.asdict(record)
        day = record.time // _DAY_S * _DAY_S
        with self._transaction() as db:
            # Insert first: of two writers of a new record exactly one inserts it (the other finds it there).
            inserted = db.execute(f"INSERT INTO usage ({', '.join(_USAGE_COLUMNS)}) "
                                  f"VALUES ({self._params(len(_USAGE_COLUMNS))}) ON CONFLICT (id) DO NOTHING",
                                  [values[c] for c in _USAGE_COLUMNS]).rowcount == 1
            if not inserted:
                old = db.execute(f"SELECT time, key_id, model, {', '.join(UNITS)} FROM usage "
                                 f"WHERE id = {self.PARAM}{self.LOCK_ROW}", (record.id,)).fetchone()
                if old[0] >= record.time:
                    return False
                changed = [c for c in _USAGE_COLUMNS if c != "id"]
                db.execute(f"UPDATE usage SET {', '.join(f'{c} = {self.PARAM}' for c in changed)} "
                           f"WHERE id = {self.PARAM}", [*(values[c] for c in changed), record.id])
                db.execute(f"UPDATE usage_daily SET {', '.join(f'{u} = {u} - {self.PARAM}' for u in UNITS)} "
                           f"WHERE key_id = {self.PARAM} AND day = {self.PARAM} AND model = {self.PARAM}",
                           [*old[3:], old[1], old[0] // _DAY_S * _DAY_S, old[2]])
            daily = (f"INSERT INTO usage_daily (key_id, model, day, {', '.join(UNITS)}) "
                     f"VALUES ({self._params(3 + len(UNITS))}) ON CONFLICT (key_id, day, model) DO UPDATE SET "
                     + ", ".join(f"{unit} = usage_daily.{unit} + excluded.{unit}" for unit in UNITS))
            db.execute(daily, [record.key_id, record.model, day, *(values[u] for u in UNITS)])
        return True

    def usage(self, *, key_id: str | None = None, since: float | None = None) -> list[UsageRecord]:
        sql = f"SELECT {', '.join(_USAGE_COLUMNS)} FROM usage WHERE 1 = 1"
        params: list[Any] = []
        if key_id is not None:
            sql += f" AND key_id = {self.PARAM}"
            params.append(key_id)
        if since is not None:
            sql += f" AND time >= {self.PARAM}"
            params.append(since)
        rows = self._read(sql + " ORDER BY time, id", params)
        return [UsageRecord(**dict(zip(_USAGE_COLUMNS, row, strict=True))) for row in rows]

    def totals(self, key_id: str, since: float | None) -> dict[str, dict[str, float]]:
        """model -> unit -> sum, for one key since ``since`` (None: ever).

        A ``since`` on a UTC day boundary (every quota period) reads the per-day
        totals; any other reads the records.
        """
        # An integer column's sum stays an integer (PostgreSQL widens SUM(BIGINT) to NUMERIC otherwise).
        sums = ", ".join(f"CAST(SUM({unit}) AS {self.TYPES['integer']})" if unit in _INTEGER_UNITS else f"SUM({unit})"
                         for unit in UNITS)
        if since is None or since % _DAY_S == 0:
            table, column = "usage_daily", "day"
        else:
            table, column = "usage", "time"
        rows = self._read(
            f"SELECT model, {sums} FROM {table} WHERE key_id = {self.PARAM} AND {column} >= {self.PARAM} "
            "GROUP BY model",
            (key_id, since if since is not None else float("-inf")),
        )
        return {row[0]: dict(zip(UNITS, row[1:], strict=True)) for row in rows}

    def close(self) -> None:
        self._db.close()


class SqliteStore(SqlStore):
    """A ledger in one SQLite file (WAL, synchronous=FULL, one transaction per write)."""

    BEGIN = "BEGIN IMMEDIATE"  # take the write lock at once: no upgrade deadlock between writers
    OUTAGES = (sqlite3.OperationalError,)  # locked past the busy timeout, the file gone or unreadable

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0):
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        super().__init__()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        private_file(self.path)  # SQLite gives the -wal and -shm files the same mode
        # isolation_level=None: we open every transaction ourselves.
        db = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db


class PostgresStore(SqlStore):
    """A ledger in a PostgreSQL database, shared by every replica that names it.

    One connection (autocommit, one explicit transaction per write); a lost
    connection is opened again on the next call, so a server restart costs
    the calls made while it was down (the ``Ledger`` retries and spools
    those). Text compares byte-wise (``COLLATE "C"``) and integers are 64-bit,
    as in SQLite, so both stores give the same results.
    """

    PARAM = "%s"
    TYPES = {"text": 'TEXT COLLATE "C"', "real": "DOUBLE PRECISION", "integer": "BIGINT"}
    LOCK_ROW = " FOR UPDATE"
    DAY_START = f"FLOOR(time / {_DAY_S}) * {_DAY_S}"
    # Replicas starting at once would race on CREATE TABLE IF NOT EXISTS; a transaction lock orders them.
    SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(8675309001)"

    def __init__(self, url: str):
        self.url = url
        super().__init__()

    @property
    def OUTAGES(self) -> tuple[type[BaseException], ...]:  # noqa: N802 - the dialect attribute of SqlStore
        import psycopg

        return (psycopg.OperationalError, psycopg.InterfaceError)  # the server is down or the connection lost

    def _connect(self) -> Any:
        require_module("psycopg", "postgres")
        import psycopg

        try:
            return psycopg.connect(self.url, autocommit=True)
        except psycopg.OperationalError as exc:
            raise Unavailable(f"cannot connect to the ledger {redact_url(self.url)}: {exc}") from exc

    def _connection(self) -> Any:
        if self._db.closed:
            log.warning("the ledger connection to %s was lost; connecting again", redact_url(self.url))
            self._db = self._connect()
        return self._db


def redact_url(url: str) -> str:
    """``url`` without its password (in the user part or a ``password=`` parameter), for logs."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    authority, slash, path = rest.partition("/")
    if "@" in authority:  # the last @ before the path ends the user part (libpq stops at the first /)
        credentials, host = authority.rsplit("@", 1)
        user, colon, _password = credentials.partition(":")
        authority = f"{user}{':***' if colon else ''}@{host}"
    text = f"{scheme}://{authority}{slash}{path}"
    return re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", text)
