"""The ledger: API keys and usage records in a database named by a URL.

``open_store(url)`` returns a ``LedgerStore`` (blocking calls, one thread):
``sqlite:///path/ledger.db`` (or a plain path) is the default, a SQLite file
in WAL mode; ``postgresql://user:password@host:port/database`` (or
``postgres://``, with the ``postgres`` extra) is one database that every
replica of a scaled deployment writes to. Both are ``SqlStore``: the same
tables, statements and results, one transaction per write; the subclasses
give only the dialect (``stores.py``, the only module that touches SQL).
Another database is one more subclass there, named in ``STORES`` here.

``Ledger`` is the asyncio face used by servers: every call runs on one
worker thread that owns the connection, so nothing blocks the event loop. A
usage write is retried and, if the database still refuses it, appended to a
spool file (next to a SQLite ledger; in the temp folder for a PostgreSQL one)
and logged as an error; the spool is replayed into the ledger the next time
it is opened or takes a write (record ids make that idempotent).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from voicemesh.errors import Unavailable
from voicemesh.metering.records import UsageRecord
from voicemesh.metering.stores import LedgerStore, PostgresStore, SqliteStore, redact_url
from voicemesh.private import private_file
from voicemesh.settings import environ

__all__ = ["LEDGER_ENV", "STORES", "Ledger", "LedgerStore", "default_url", "open_store", "redact_url",
           "replay_spool", "spool", "spool_path", "sqlite_path", "state_dir"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def _sqlite(url: str) -> SqliteStore:
    return SqliteStore(sqlite_path(url))


# URL scheme -> store factory.
STORES: dict[str, Callable[[str], LedgerStore]] = {"sqlite": _sqlite, "postgresql": PostgresStore,
                                                    "postgres": PostgresStore}


LEDGER_ENV = "VOICEMESH_LEDGER"


def state_dir() -> Path:
    """$VOICEMESH_STATE_DIR, else ~/.voicemesh (where ``voicemesh up`` keeps its state)."""
    return Path(environ("VOICEMESH_STATE_DIR") or Path.home() / ".voicemesh").expanduser()


def default_url() -> str:
    """$VOICEMESH_LEDGER, else ledger.db in the state folder."""
    return environ(LEDGER_ENV) or f"sqlite:///{state_dir() / 'ledger.db'}"


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
    with open(private_file(path), "a", encoding="utf-8") as f:
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
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work)
        except self._store.OUTAGES as exc:  # a retry may well succeed: UNAVAILABLE, not INTERNAL
            log.warning("the usage ledger %s failed: %s", redact_url(self.url), exc)
            raise Unavailable(f"the usage ledger is unavailable ({type(exc).__name__}); try again") from exc

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
