"""The ledger on real SQLite files: idempotent records, WAL, spool on failure, kill -9 durability."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from voicemesh.metering.ledger import Ledger, SqliteStore, open_store, replay_spool, spool, spool_path, sqlite_path
from voicemesh.metering.records import UsageRecord


def _record(**fields) -> UsageRecord:
    values = dict(key_id="k1", session_id="s1", service="tts", model="piper/en_US-joe-medium")
    values.update(fields)
    return UsageRecord(**values)


def test_url_forms(tmp_path):
    assert sqlite_path(f"sqlite:///{tmp_path}/a.db") == tmp_path / "a.db"
    assert sqlite_path(f"sqlite://{tmp_path}/a.db") == tmp_path / "a.db"
    assert sqlite_path("sqlite://rel/a.db").as_posix() == "rel/a.db"
    assert sqlite_path(str(tmp_path / "b.db")) == tmp_path / "b.db"
    store = open_store(f"sqlite:///{tmp_path}/nested/dir/c.db")
    store.close()
    assert (tmp_path / "nested/dir/c.db").exists()
    with pytest.raises(ValueError, match="postgresql"):
        open_store("postgresql://user:pw@db/ledger")


def test_wal_and_round_trip(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/l.db")
    first = _record(characters=12, audio_seconds_out=1.5, turn=3, time=1000.0)
    assert store.add_usage(first)
    assert not store.add_usage(first), "a record written twice must count once"
    store.add_usage(_record(key_id="k2", input_tokens=7, output_tokens=5, cached_tokens=2, model="llama.cpp/x",
                            service="llm", time=2000.0))
    store.add_usage(_record(characters=3, time=3000.0))
    with sqlite3.connect(tmp_path / "l.db") as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("SELECT COUNT(*) FROM usage").fetchone()[0] == 3
    assert [r.characters for r in store.usage(key_id="k1")] == [12, 3]
    assert store.usage(key_id="k1")[0] == first
    assert [r.time for r in store.usage(since=1500.0)] == [2000.0, 3000.0]
    assert store.totals("k1", None)["piper/en_US-joe-medium"]["characters"] == 15
    assert store.totals("k1", 2500.0)["piper/en_US-joe-medium"]["characters"] == 3
    assert store.totals("k2", None) == {"llama.cpp/x": {
        "audio_seconds_in": 0, "audio_seconds_out": 0, "input_tokens": 7, "output_tokens": 5,
        "cached_tokens": 2, "characters": 0}}
    store.close()


async def test_failed_write_is_spooled_and_replayed_once(tmp_path, caplog):
    url = f"sqlite:///{tmp_path}/l.db"
    ledger = await Ledger(url).open()
    ledger.RETRY_DELAYS_S = (0.01,)
    ok = _record(characters=1)
    assert await ledger.record(ok)
    with sqlite3.connect(tmp_path / "l.db") as other:  # the database breaks under the server
        other.execute("DROP TABLE usage")
    lost = _record(characters=42)
    assert not await ledger.record(lost)
    await ledger.close()
    assert spool_path(url).exists()
    assert any(r.levelname == "ERROR" and lost.id in r.getMessage() for r in caplog.records)

    # Reopening recreates the table and replays the spool; replaying the same record again adds nothing.
    ledger = await Ledger(url).open()
    assert not spool_path(url).exists()
    records = await ledger.call(lambda store: store.usage())
    assert records == [lost]

    # While running: the first write that succeeds after a failure brings the spooled records in.
    with sqlite3.connect(tmp_path / "l.db") as other:
        other.execute("ALTER TABLE usage RENAME TO usage_away")
    ledger.RETRY_DELAYS_S = (0.01,)
    later = _record(characters=7)
    assert not await ledger.record(later)
    with sqlite3.connect(tmp_path / "l.db") as other:
        other.execute("ALTER TABLE usage_away RENAME TO usage")
    after = _record(characters=8)
    assert await ledger.record(after)
    assert not spool_path(url).exists()
    assert sorted(r.characters for r in await ledger.call(lambda store: store.usage())) == [7, 8, 42]
    await ledger.close()

    # A replay that died left its claimed file: the next open replays it.
    spool(spool_path(url), _record(characters=9))
    orphan = spool_path(url).with_name(spool_path(url).name + ".12345.678")
    spool_path(url).rename(orphan)
    store = SqliteStore(tmp_path / "l.db")
    assert replay_spool(store, spool_path(url)) == 1 and not orphan.exists()
    store.close()
    store = SqliteStore(tmp_path / "l.db")
    spool(spool_path(url), lost)
    assert replay_spool(store, spool_path(url)) == 0, "a record replayed twice counts once"
    assert sum(r.id == lost.id for r in store.usage()) == 1
    store.close()


async def test_ledger_calls_run_off_the_event_loop(tmp_path):
    ledger = await Ledger(f"sqlite:///{tmp_path}/l.db").open()
    import threading

    names = await asyncio.gather(*[ledger.call(lambda store: threading.current_thread().name) for _ in range(3)])
    await ledger.close()
    assert all(name.startswith("ledger") for name in names)
    assert threading.current_thread().name not in names


_WRITER = textwrap.dedent("""
    import sys
    from voicemesh.metering.ledger import open_store
    from voicemesh.metering.records import UsageRecord
    store = open_store(sys.argv[1])
    name, count = sys.argv[2], int(sys.argv[3])
    for n in range(count):
        store.add_usage(UsageRecord(key_id="k", session_id=name, service="stt", model="m", turn=n,
                                    audio_seconds_in=0.5, id=f"{name}-{n}"))
        print(f"{name}-{n}", flush=True)
""")


def test_processes_writing_at_once_lose_nothing(tmp_path):
    url = f"sqlite:///{tmp_path}/l.db"
    open_store(url).close()
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, url, f"w{i}", "150"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(3)]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err for _, err in outputs]
    store = open_store(url)
    records = store.usage()
    totals = store.totals("k", None)["m"]
    store.close()
    assert sorted(r.id for r in records) == sorted(f"w{i}-{n}" for i in range(3) for n in range(150))
    assert totals["audio_seconds_in"] == 3 * 150 * 0.5


def test_kill_9_keeps_every_committed_record_once(tmp_path):
    url = f"sqlite:///{tmp_path}/l.db"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, url, "rec", "100000"], stdout=subprocess.PIPE, text=True)
    committed = []
    for line in proc.stdout:
        committed.append(line.strip())
        if len(committed) == 40:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    committed += [line.strip() for line in proc.stdout.read().splitlines() if line.strip()]
    store = open_store(url)
    ids = [r.id for r in store.usage()]
    store.close()
    assert len(ids) == len(set(ids))
    assert set(committed) <= set(ids), "a record reported committed before kill -9 is missing"
    assert len(ids) - len(committed) <= 1, "at most the record in flight at the kill may be there unreported"
    with sqlite3.connect(tmp_path / "l.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_daily_totals_match_the_records_and_are_rebuilt_for_old_ledgers(tmp_path):
    day = 86400.0
    store = open_store(f"sqlite:///{tmp_path}/l.db")
    times = [3 * day + 10, 3 * day + 20, 4 * day + 5, 5 * day - 1]
    for n, when in enumerate(times):
        store.add_usage(_record(characters=n + 1, audio_seconds_out=0.25 * (n + 1), time=when, id=f"r{n}"))
    store.add_usage(_record(characters=100, time=times[0], id="r0"))  # a retry of r0: ignored
    by_day = store.totals("k1", 4 * day)  # a day boundary: read from the per-day totals
    by_record = store.totals("k1", 4 * day - 0.5)  # not a boundary: read from the records
    assert by_day == by_record
    assert by_day["piper/en_US-joe-medium"]["characters"] == 3 + 4
    assert store.totals("k1", None)["piper/en_US-joe-medium"]["characters"] == 10
    store.close()
    with sqlite3.connect(tmp_path / "l.db") as db:  # a ledger from before the per-day totals
        db.execute("DELETE FROM usage_daily")
    store = open_store(f"sqlite:///{tmp_path}/l.db")
    assert store.totals("k1", None)["piper/en_US-joe-medium"]["characters"] == 10
    assert store.totals("k1", 4 * day) == by_day
    store.close()
