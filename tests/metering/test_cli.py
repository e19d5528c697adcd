"""``voicemesh keys`` and ``voicemesh usage`` as subprocesses on a real SQLite ledger and a real PostgreSQL one."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys

import pytest

from tests.metering.postgres import PASSWORD
from voicemesh.metering import keys
from voicemesh.metering.ledger import open_store
from voicemesh.metering.prices import EXAMPLE, PriceTable
from voicemesh.metering.records import UsageRecord
from voicemesh.process import free_port

DAY1 = dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC).timestamp()
DAY2 = dt.datetime(2026, 11, 21, 10, tzinfo=dt.UTC).timestamp()


def voicemesh(*args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "voicemesh.cli", *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})})
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def url(ledger_url):
    return ledger_url


def test_keys_create_list_revoke(url, tmp_path):
    created = voicemesh("keys", "create", "alice", "--quota", "audio_seconds_in=60/day", "--quota", "cost=2/month",
                        "--expires", "30d", "--key-file", str(tmp_path / "alice.key"), "--ledger", url)
    key = created.stdout.strip()
    assert "shown only now" in created.stderr
    assert (tmp_path / "alice.key").read_text().strip() == key
    store = open_store(url)
    record = keys.verify(store, key)
    assert record.name == "alice" and [str(q) for q in record.quotas] == ["audio_seconds_in=60/day", "cost=2/month"]
    store.add_usage(UsageRecord(key_id=record.id, session_id="s", service="stt", model="faster-whisper/tiny.en:en",
                                audio_seconds_in=12.5))
    store.close()

    listing = json.loads(voicemesh("keys", "list", "--format", "json", "--prices", str(EXAMPLE),
                                   "--ledger", url).stdout)
    assert [(e["id"], e["name"], e["state"]) for e in listing] == [(record.id, "alice", "active")]
    assert "hash" not in listing[0] and "salt" not in listing[0]
    assert listing[0]["quotas"][0]["used"] == 12.5 and listing[0]["quotas"][0]["resets"].endswith("T00:00:00Z")
    assert listing[0]["quotas"][1]["used"] == pytest.approx(12.5 * 0.0001)
    table = voicemesh("keys", "list", "--ledger", url).stdout
    assert record.id in table and "audio_seconds_in 12.5/60 per day" in table
    assert key not in table and keys.split_key(key)[1] not in table

    as_json = json.loads(voicemesh("keys", "create", "bot", "--json", "--ledger", url).stdout)
    store = open_store(url)
    assert keys.verify(store, as_json["key"]).id == as_json["id"] and as_json["state"] == "active"
    store.close()

    assert "revoked key" in voicemesh("keys", "revoke", record.id, "--ledger", url).stdout
    again = voicemesh("keys", "revoke", record.id, "--ledger", url, check=False)
    assert again.returncode == 1 and "already revoked" in again.stderr
    listing = json.loads(voicemesh("keys", "list", "--format", "json", "--ledger", url).stdout)
    states = {e["name"]: e["state"] for e in listing}
    assert states == {"alice": "revoked", "bot": "active"}


@pytest.mark.parametrize(("args", "message"), [
    (["keys", "create", "x", "--quota", "bogus=1"], "unknown quota unit 'bogus'"),
    (["keys", "create", "x", "--quota", "characters=lots"], "not a number"),
    (["keys", "create", "x", "--expires", "someday"], "not a time"),
    (["keys", "revoke", "nobody"], "no key with id or active name 'nobody'"),
    (["usage", "--key", "nobody"], "no key with id or name 'nobody'"),
    (["usage", "--since", "last week"], "not a time"),
])
def test_bad_arguments_exit_2_with_a_clear_message(url, args, message):
    result = voicemesh(*args, "--ledger", url, check=False)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_bad_ledger_url_is_reported(tmp_path):
    result = voicemesh("usage", "--ledger", "mysql://db/ledger", check=False)
    assert result.returncode == 2 and "unsupported ledger URL scheme 'mysql'" in result.stderr


def test_postgresql_ledger_from_the_environment(postgres_url):
    env = {"VOICEMESH_LEDGER": postgres_url}
    key = voicemesh("keys", "create", "ci", "--quota", "characters=10/day", env=env).stdout.strip()
    store = open_store(postgres_url)
    record = keys.verify(store, key)
    store.add_usage(UsageRecord(key_id=record.id, session_id="s", service="tts", model="piper/en_US-joe-medium",
                                characters=10))
    store.close()
    listing = json.loads(voicemesh("keys", "list", "--format", "json", env=env).stdout)
    assert [(e["id"], e["quotas"][0]["used"]) for e in listing] == [(record.id, 10)]
    report = json.loads(voicemesh("usage", "--by", "key", "--format", "json", env=env).stdout)
    assert [(r["key"], r["records"], r["characters"]) for r in report["rows"]] == [(record.id, 1, 10)]


def test_unreachable_postgresql_is_reported_without_its_password(postgres_server):
    url = postgres_server.url().replace(f":{postgres_server.port}/", f":{free_port()}/")
    result = voicemesh("keys", "list", "--ledger", url, check=False)
    assert result.returncode == 2 and "cannot connect to the ledger postgresql://voicemesh:***@" in result.stderr
    assert PASSWORD not in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_help_texts():
    for command in (["keys"], ["keys", "create"], ["keys", "list"], ["keys", "revoke"], ["usage"]):
        text = voicemesh(*command, "--help").stdout
        assert "--ledger" in text or "ACTION" in text
    assert "UNIT=LIMIT[/PERIOD]" in voicemesh("keys", "create", "--help").stdout
    assert "model,session,day" in voicemesh("usage", "--help").stdout


def _fill(url) -> tuple[str, str, list[UsageRecord]]:
    store = open_store(url)
    alice, _ = keys.create_key(store, "alice")
    bob, _ = keys.create_key(store, "bob")
    records = [
        UsageRecord(key_id=alice.id, session_id="a1", service="stt", model="faster-whisper/tiny.en:en",
                    audio_seconds_in=3.25, time=DAY1),
        UsageRecord(key_id=alice.id, session_id="a1", service="llm", model="llama.cpp/smollm2-135m-instruct",
                    turn=1, input_tokens=120, cached_tokens=100, output_tokens=30, time=DAY1 + 1),
        UsageRecord(key_id=alice.id, session_id="a1", service="tts", model="piper/en_US-joe-medium", turn=1,
                    characters=80, audio_seconds_out=4.5, time=DAY1 + 2),
        UsageRecord(key_id=alice.id, session_id="a2", service="stt", model="faster-whisper/tiny.en:en",
                    audio_seconds_in=1.75, time=DAY2),
        UsageRecord(key_id=bob.id, session_id="b1", service="tts", model="openai/tts-1:alloy", characters=10,
                    time=DAY2 + 5),
        UsageRecord(key_id=bob.id, session_id="b1", service="tts", model="mystery/model", characters=7, time=DAY2 + 6),
    ]
    for record in records:
        store.add_usage(record)
    store.close()
    return alice.id, bob.id, records


def test_usage_by_model_with_cost(url):
    _, _, records = _fill(url)
    report = json.loads(voicemesh("usage", "--format", "json", "--prices", str(EXAMPLE), "--ledger", url).stdout)
    rows = {row["model"]: row for row in report["rows"]}
    assert rows["faster-whisper/tiny.en:en"]["audio_seconds_in"] == 5.0
    assert rows["faster-whisper/tiny.en:en"]["records"] == 2
    table = PriceTable.load(EXAMPLE)
    assert rows["llama.cpp/smollm2-135m-instruct"]["cost"] == pytest.approx(
        table.cost("llama.cpp/smollm2-135m-instruct", {"input_tokens": 120, "cached_tokens": 100, "output_tokens": 30}))
    assert rows["mystery/model"]["cost"] is None and rows["mystery/model"]["unpriced"] == ["mystery/model"]
    total = report["total"]
    assert total["records"] == len(records) and total["characters"] == 97 and total["cost"] is None
    assert total["unpriced"] == ["mystery/model"] and report["currency"] == "USD"
    text = voicemesh("usage", "--prices", str(EXAMPLE), "--ledger", url).stdout
    assert "cost (USD)" in text and "TOTAL" in text and "mystery/model" in text


def test_usage_by_day_session_key_since_and_csv(url):
    alice, bob, _ = _fill(url)
    days = json.loads(voicemesh("usage", "--by", "day", "--format", "json", "--ledger", url).stdout)["rows"]
    assert [(r["day"], r["records"]) for r in days] == [("2026-11-20", 3), ("2026-11-21", 3)]
    sessions = json.loads(voicemesh("usage", "--by", "session", "--key", "alice", "--format", "json",
                                    "--ledger", url).stdout)
    assert [(r["session"], r["records"], r["audio_seconds_in"]) for r in sessions["rows"]] == [
        ("a1", 3, 3.25), ("a2", 1, 1.75)]
    assert "cost" not in sessions["total"], "no price table: no cost column"
    since = json.loads(voicemesh("usage", "--by", "key", "--since", "2026-11-21", "--format", "json",
                                 "--ledger", url).stdout)["rows"]
    assert {r["key"]: r["records"] for r in since} == {alice: 1, bob: 2}
    rows = list(csv.DictReader(io.StringIO(voicemesh("usage", "--by", "service", "--format", "csv",
                                                     "--ledger", url).stdout)))
    assert {r["service"]: float(r["characters"]) for r in rows} == {"llm": 0, "stt": 0, "tts": 97}
