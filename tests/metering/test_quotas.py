"""Quotas on a real SQLite ledger and a real PostgreSQL one: periods, unit and cost limits, messages naming the quota and its reset."""

from __future__ import annotations

import datetime as dt

import pytest

from voicemesh.errors import FailedPrecondition, ResourceExhausted
from voicemesh.metering import keys, quotas
from voicemesh.metering.ledger import open_store
from voicemesh.metering.prices import PriceTable
from voicemesh.metering.records import Quota, UsageRecord

NOW = dt.datetime(2026, 12, 31, 15, 30, tzinfo=dt.UTC).timestamp()
DAY = 86400.0


@pytest.fixture
def store(ledger_url):
    store = open_store(ledger_url)
    yield store
    store.close()


def _use(store, key, when, model="faster-whisper/tiny.en:en", **units):
    store.add_usage(UsageRecord(key_id=key.id, session_id="s", service="stt", model=model, time=when, **units))


def test_periods():
    assert keys.iso(quotas.period_start("day", NOW)) == "2026-12-31T00:00:00Z"
    assert keys.iso(quotas.next_reset("day", NOW)) == "2027-01-01T00:00:00Z"
    assert keys.iso(quotas.period_start("month", NOW)) == "2026-12-01T00:00:00Z"
    assert keys.iso(quotas.next_reset("month", NOW)) == "2027-01-01T00:00:00Z"
    june = dt.datetime(2026, 6, 10, tzinfo=dt.UTC).timestamp()
    assert keys.iso(quotas.next_reset("month", june)) == "2026-07-01T00:00:00Z"
    assert quotas.period_start("total", NOW) is None and quotas.next_reset("total", NOW) is None


def test_quota_parse():
    assert Quota.parse("audio_seconds_in=60/day") == Quota("audio_seconds_in", 60, "day")
    assert Quota.parse("cost=2.5") == Quota("cost", 2.5, "total")
    for bad in ("seconds=5", "characters=many", "characters", "characters=5/week", "characters=-1"):
        with pytest.raises(ValueError):
            Quota.parse(bad)


def test_unit_quota_refuses_when_used_up_and_names_it(store):
    key, _ = keys.create_key(store, "alice", quotas=[Quota("audio_seconds_in", 10, "day")])
    other, _ = keys.create_key(store, "bob", quotas=[Quota("audio_seconds_in", 10, "day")])
    _use(store, key, NOW - DAY, audio_seconds_in=50)  # yesterday: another period
    _use(store, key, NOW - 60, audio_seconds_in=6)
    quotas.check(store, key, None, now=NOW)
    with pytest.raises(ResourceExhausted, match="10/day .* would be exceeded: 6 of 10 used and 4.5 more") as info:
        quotas.check(store, key, None, pending={"audio_seconds_in": 4.5}, now=NOW)
    assert not info.value.retryable
    _use(store, key, NOW - 30, audio_seconds_in=4)
    with pytest.raises(ResourceExhausted) as info:
        quotas.check(store, key, None, now=NOW)
    message = info.value.message
    assert "audio_seconds_in=10/day" in message and "10 of 10 used" in message
    assert "resets at 2027-01-01T00:00:00Z" in message and key.id in message
    quotas.check(store, other, None, now=NOW)  # another key keeps working
    quotas.check(store, key, None, now=NOW + DAY)  # the next day


def test_cost_quota_uses_the_price_table(store, tmp_path):
    path = tmp_path / "prices.json"
    path.write_text('{"prices": {"faster-whisper/*": {"audio_seconds_in": 0.01}, '
                    '"llama.cpp/*": {"output_tokens": 0.001}}}')
    prices = PriceTable.load(path)
    key, _ = keys.create_key(store, "alice", quotas=[Quota("cost", 1.0, "month"), Quota("output_tokens", 10**6)])
    _use(store, key, NOW - 5 * DAY, audio_seconds_in=50)  # 0.50
    _use(store, key, NOW - DAY, model="llama.cpp/m", output_tokens=400)  # 0.40
    quotas.check(store, key, prices, now=NOW)
    uses = quotas.status(store, key, prices, now=NOW)
    assert [round(u.used, 9) for u in uses] == [0.9, 400]
    _use(store, key, NOW - 1, model="llama.cpp/m", output_tokens=100)  # 0.10 -> 1.00
    with pytest.raises(ResourceExhausted, match=r"cost=1/month .*resets at 2027-01-01"):
        quotas.check(store, key, prices, now=NOW)
    with pytest.raises(FailedPrecondition, match="price table"):
        quotas.check(store, key, None, now=NOW)


def test_total_quota_never_resets(store):
    key, _ = keys.create_key(store, "trial", quotas=[Quota("characters", 100)])
    _use(store, key, NOW - 400 * DAY, characters=100)
    with pytest.raises(ResourceExhausted, match="does not reset"):
        quotas.check(store, key, None, now=NOW)
