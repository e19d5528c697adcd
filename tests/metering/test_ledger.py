"""The ledger on real SQLite files and a real PostgreSQL server: idempotent records, per-day totals, spool on
failure, kill -9 durability, replicas writing at once."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from tests.metering.helpers import run_sql
from tests.metering.postgres import PASSWORD
from voicemesh.metering.ledger import Ledger, open_store, redact_url, replay_spool, spool, spool_path, sqlite_path
from voicemesh.metering.records import UsageRecord

REPO = Path(__file__).resolve().parents[2]


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
    with pytest.raises(ValueError, match="unsupported ledger URL scheme 'mysql' .*postgresql"):
        open_store("mysql://user:pw@db/ledger")


def test_redact_url_hides_every_password():
    assert redact_url("postgresql://vm:s3cr@t@db:5432/ledger") == "postgresql://vm:***@db:5432/ledger"
    assert redact_url("postgres://vm:pw@db/ledger?sslmode=require&password=pw2") == (
        "postgres://vm:***@db/ledger?sslmode=require&password=***")
    assert redact_url("postgresql://vm@db/ledger") == "postgresql://vm@db/ledger"
    assert redact_url("sqlite:////var/ledger.db") == "sqlite:////var/ledger.db"


def test_missing_psycopg_names_the_extra():
    # A Python that cannot see site-packages (where psycopg is) but imports voicemesh from the repo.
    script = ("import sys; sys.path = [p for p in sys.path if 'site-packages' not in p]; "
              "from voicemesh.metering.ledger import open_store; open_store(sys.argv[1])")
    result = subprocess.run([sys.executable, "-c", script, "postgresql://vm:pw@127.0.0.1:1/ledger"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "MissingExtra" in result.stderr and "pip install 'voicemesh[postgres]'" in result.stderr, result.stderr


def test_sqlite_ledger_is_in_wal_mode(tmp_path):
    open_store(f"sqlite:///{tmp_path}/l.db").close()
    with sqlite3.connect(tmp_path / "l.db") as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_round_trip(ledger_url):
    store = open_store(ledger_url)
    first = _record(characters=12, audio_seconds_out=1.5, turn=3, time=1000.0)
    assert store.add_usage(first)
    assert not store.add_usage(first), "a record written twice must count once"
    store.add_usage(_record(key_id="k2", input_tokens=7, output_tokens=5, cached_tokens=2, model="llama.cpp/x",
                            service="llm", time=2000.0))
    store.add_usage(_record(characters=3, time=3000.0))
    assert run_sql(ledger_url, "SELECT COUNT(*) FROM usage") == [(3,)]
    assert [r.characters for r in store.usage(key_id="k1")] == [12, 3]
    assert store.usage(key_id="k1")[0] == first
    assert [r.time for r in store.usage(since=1500.0)] == [2000.0, 3000.0]
    assert store.totals("k1", None)["piper/en_US-joe-medium"]["characters"] == 15
    assert store.totals("k1", 2500.0)["piper/en_US-joe-medium"]["characters"] == 3
    assert {type(v) for v in store.totals("k2", None)["llama.cpp/x"].values()} == {int, float}
    assert store.totals("k2", None) == {"llama.cpp/x": {
        "audio_seconds_in": 0, "audio_seconds_out": 0, "input_tokens": 7, "output_tokens": 5,
        "cached_tokens": 2, "characters": 0, "video_seconds_out": 0}}
    store.close()


async def test_failed_write_is_spooled_and_replayed_once(ledger_url, caplog):
    url = ledger_url
    ledger = await Ledger(url).open()
    ledger.RETRY_DELAYS_S = (0.01,)
    ok = _record(characters=1)
    assert await ledger.record(ok)
    run_sql(url, "DROP TABLE usage")  # the database breaks under the server
    lost = _record(characters=42)
    assert not await ledger.record(lost)
    await ledger.close()
    assert spool_path(url).exists()
    assert any(r.levelname == "ERROR" and lost.id in r.getMessage() for r in caplog.records)
    assert PASSWORD not in caplog.text, "the ledger URL's password must not reach the logs"

    # Reopening recreates the table and replays the spool; replaying the same record again adds nothing.
    ledger = await Ledger(url).open()
    assert not spool_path(url).exists()
    records = await ledger.call(lambda store: store.usage())
    assert records == [lost]

    # While running: the first write that succeeds after a failure brings the spooled records in.
    run_sql(url, "ALTER TABLE usage RENAME TO usage_away")
    ledger.RETRY_DELAYS_S = (0.01,)
    later = _record(characters=7)
    assert not await ledger.record(later)
    run_sql(url, "ALTER TABLE usage_away RENAME TO usage")
    after = _record(characters=8)
    assert await ledger.record(after)
    assert not spool_path(url).exists()
    assert sorted(r.characters for r in await ledger.call(lambda store: store.usage())) == [7, 8, 42]
    await ledger.close()

    # A replay that died left its claimed file: the next open replays it.
    spool(spool_path(url), _record(characters=9))
    orphan = spool_path(url).with_name(spool_path(url).name + ".12345.678")
    spool_path(url).rename(orphan)
    store = open_store(url)
    assert replay_spool(store, spool_path(url)) == 1 and not orphan.exists()
    store.close()
    store = open_store(url)
    spool(spool_path(url), lost)
    assert replay_spool(store, spool_path(url)) == 0, "a record replayed twice counts once"
    assert sum(r.id == lost.id for r in store.usage()) == 1
    store.close()


async def test_ledger_calls_run_off_the_event_loop(ledger_url):
    ledger = await Ledger(ledger_url).open()
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


def test_processes_writing_at_once_lose_nothing(ledger_url):
    url = ledger_url
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


def test_kill_9_keeps_every_committed_record_once(ledger_url):
    url = ledger_url
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
    if url.startswith("sqlite://"):
        assert run_sql(url, "PRAGMA integrity_check") == [("ok",)]


def test_daily_totals_match_the_records_and_are_rebuilt_for_old_ledgers(ledger_url):
    day = 86400.0
    store = open_store(ledger_url)
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
    daily = "SELECT key_id, model, day, characters, audio_seconds_out FROM usage_daily ORDER BY day"
    written = run_sql(ledger_url, daily)
    assert [row[2:4] for row in written] == [(3 * day, 3), (4 * day, 7)], "5 * day - 1 belongs to day 4"
    run_sql(ledger_url, "DELETE FROM usage_daily")  # a ledger from before the per-day totals
    store = open_store(ledger_url)
    assert run_sql(ledger_url, daily) == written, "rebuilt per-day totals differ from the written ones"
    assert store.totals("k1", None)["piper/en_US-joe-medium"]["characters"] == 10
    assert store.totals("k1", 4 * day) == by_day
    store.close()


def test_two_stores_writing_the_same_records_count_each_once(ledger_url):
    """Two stores (two connections, as two replicas) write the same record ids at the same time."""
    open_store(ledger_url).close()
    records = [_record(key_id="shared", characters=2, audio_seconds_out=0.5, id=f"r{n}", time=1000.0 + n)
               for n in range(150)]
    start = threading.Barrier(2)
    added: dict[int, int | BaseException] = {}

    def write(n: int) -> None:
        store = open_store(ledger_url)  # a store is used by the thread that opened it
        try:
            start.wait()
            added[n] = sum(store.add_usage(record) for record in records)
        except BaseException as exc:  # reported below
            added[n] = exc
        finally:
            store.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(isinstance(count, int) for count in added.values()), added
    assert sum(added.values()) == len(records), f"each record must be new to exactly one store, got {added}"
    store = open_store(ledger_url)
    assert [r.id for r in store.usage(key_id="shared")] == [r.id for r in records]
    totals = store.totals("shared", None)["piper/en_US-joe-medium"]
    assert (totals["characters"], totals["audio_seconds_out"]) == (2 * len(records), 0.5 * len(records))
    assert store.totals("shared", 0.0) == store.totals("shared", 999.5), "per-day totals differ from the records"
    store.close()


def test_replicas_creating_the_schema_at_once(postgres_url):
    """Replicas starting together each create the tables if needed; none may fail."""
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_and_write(n: int) -> None:
        start.wait()
        try:
            store = open_store(postgres_url)
            store.add_usage(_record(id=f"replica-{n}", characters=1))
            store.close()
        except BaseException as exc:  # reported below with the others
            errors.append(exc)

    threads = [threading.Thread(target=open_and_write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert run_sql(postgres_url, "SELECT characters FROM usage_daily") == [(4,)]


async def test_lost_postgres_connection_is_opened_again(postgres_url, caplog):
    ledger = await Ledger(postgres_url).open()
    ledger.RETRY_DELAYS_S = (0.01, 0.05)
    assert await ledger.record(_record(id="before", characters=1))
    # The server drops the ledger's connection (a restart, a failover, an idle timeout).
    killed = run_sql(postgres_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                   "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    assert killed == [(True,)]
    assert await ledger.record(_record(id="after", characters=2)), "the retry must reconnect, not spool"
    assert [r.id for r in await ledger.call(lambda store: store.usage())] == ["before", "after"]
    await ledger.close()
    assert "connecting again" in caplog.text and PASSWORD not in caplog.text


def test_a_growing_record_replaces_its_earlier_versions(ledger_url):
    """A long stream's usage is written as it grows (same id, later time); the last version counts once."""
    store = open_store(ledger_url)
    first = _record(key_id="grows", characters=10, audio_seconds_out=1.0, id="live", time=1000.0)
    later = _record(key_id="grows", characters=30, audio_seconds_out=2.5, id="live", time=1002.0)
    assert store.add_usage(first) and store.add_usage(later)
    assert not store.add_usage(first), "an older version (a replayed spool) changes nothing"
    assert not store.add_usage(later), "the same version again changes nothing"
    assert [(r.characters, r.audio_seconds_out) for r in store.usage(key_id="grows")] == [(30, 2.5)]
    totals = store.totals("grows", None)["piper/en_US-joe-medium"]
    assert (totals["characters"], totals["audio_seconds_out"]) == (30, 2.5)
    assert store.totals("grows", 0.0) == store.totals("grows", 999.5), "per-day totals differ from the records"
    store.close()


def test_video_seconds_are_a_unit_and_an_older_ledger_gets_their_column(ledger_url):
    store = open_store(ledger_url)
    store.add_usage(_record(service="avatar", model="local/ada", video_seconds_out=2.5, audio_seconds_in=2.5, id="v1"))
    assert store.totals("k1", None)["local/ada"]["video_seconds_out"] == 2.5
    assert [r.video_seconds_out for r in store.usage(key_id="k1")] == [2.5]
    store.close()
    for table in ("usage", "usage_daily"):  # a ledger written before avatars
        run_sql(ledger_url, f"ALTER TABLE {table} DROP COLUMN video_seconds_out")
    store = open_store(ledger_url)
    assert store.totals("k1", None)["local/ada"] == {**store.totals("k1", None)["local/ada"], "video_seconds_out": 0}
    store.add_usage(_record(service="avatar", model="local/ada", video_seconds_out=1.0, id="v2"))
    assert store.totals("k1", None)["local/ada"]["video_seconds_out"] == 1.0
    assert store.totals("k1", 0.0)["local/ada"]["video_seconds_out"] == 1.0  # the per-day totals too
    store.close()
