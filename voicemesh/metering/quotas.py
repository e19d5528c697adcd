"""Quotas: refuse a key whose limit for the current period is used up.

A quota limits one unit (``audio_seconds_in``, ``output_tokens`` ...) or the
cost (with the price table) per UTC day, UTC month or in total. ``check`` is
called before each new stream (by the server runtime), before each turn
(by the orchestrator) and every ``--usage-interval-s`` of an open stream;
between those checks the runtime meters a stream's units against ``left``, so
a unit quota stops a stream the moment it is overrun. A cost quota can be
overrun by at most one interval of use.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from voicemesh.errors import FailedPrecondition, ResourceExhausted
from voicemesh.metering.keys import iso
from voicemesh.metering.ledger import LedgerStore
from voicemesh.metering.prices import PriceTable
from voicemesh.metering.records import COST, KeyRecord, Quota

log = logging.getLogger(__name__)


def period_start(period: str, now: float) -> float | None:
    """Start of the period containing ``now`` (None for ``total``)."""
    day = dt.datetime.fromtimestamp(now, dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day.timestamp()
    if period == "month":
        return day.replace(day=1).timestamp()
    return None


def next_reset(period: str, now: float) -> float | None:
    """When the period containing ``now`` ends (None for ``total``)."""
    start = period_start(period, now)
    if start is None:
        return None
    begin = dt.datetime.fromtimestamp(start, dt.UTC)
    if period == "day":
        return (begin + dt.timedelta(days=1)).timestamp()
    return begin.replace(year=begin.year + begin.month // 12, month=begin.month % 12 + 1).timestamp()


@dataclass(frozen=True)
class QuotaUse:
    """How much of a quota is used now."""

    quota: Quota
    used: float | None  # None: a cost quota without a price table
    resets: float | None

    @property
    def exhausted(self) -> bool:
        return self.used is not None and self.used >= self.quota.limit


def used(totals: Mapping[str, Mapping[str, float]], unit: str, prices: PriceTable | None) -> float | None:
    """Sum of ``unit`` (or cost) over the per-model totals; None for cost without a price table."""
    if unit != COST:
        return float(sum(per_model.get(unit, 0) or 0 for per_model in totals.values()))
    if prices is None:
        return None
    total = 0.0
    for model, per_model in totals.items():
        cost = prices.cost(model, per_model)
        if cost is None:
            log.warning("no price for model %s: its usage counts as cost 0 in cost quotas", model)
        total += cost or 0.0
    return total


def status(store: LedgerStore, key: KeyRecord, prices: PriceTable | None, now: float | None = None) -> list[QuotaUse]:
    """Use of every quota of ``key`` in its current period."""
    now = time.time() if now is None else now
    cache: dict[float | None, dict[str, dict[str, float]]] = {}
    uses = []
    for quota in key.quotas:
        since = period_start(quota.period, now)
        if since not in cache:
            cache[since] = store.totals(key.id, since)
        uses.append(QuotaUse(quota, used(cache[since], quota.unit, prices), next_reset(quota.period, now)))
    return uses


def check(
    store: LedgerStore,
    key: KeyRecord,
    prices: PriceTable | None,
    *,
    pending: Mapping[str, float] | None = None,
    now: float | None = None,
) -> None:
    """Raise ResourceExhausted if a quota of ``key`` is used up, or would be by ``pending`` units."""
    pending = pending or {}
    for use in status(store, key, prices, now):
        if use.used is None:
            raise FailedPrecondition(f"API key {key.id} ({key.name}) has the cost quota {use.quota} but this server "
                                     "has no price table (set --prices or VOICEMESH_PRICES)")
        extra = pending.get(use.quota.unit, 0.0)
        if use.exhausted or (extra > 0 and use.used + extra > use.quota.limit):
            when = f"it resets at {iso(use.resets)}" if use.resets else "it does not reset (a total quota)"
            wanted = f" and {extra:g} more were asked for" if extra > 0 else ""
            error = ResourceExhausted(
                f"quota {use.quota} of API key {key.id} ({key.name}) "
                f"{'is used up' if use.exhausted else 'would be exceeded'}: "
                f"{use.used:g} of {use.quota.limit:g} used{wanted}; {when}",
                reason="QUOTA_EXCEEDED",
            )
            error.retryable = False  # another provider or a retry hits the same quota
            raise error


def left(store: LedgerStore, key: KeyRecord, prices: PriceTable | None, now: float | None = None) -> dict[str, float]:
    """Unit -> what the unit quotas of ``key`` have left in their periods (the least of them); cost quotas
    are not here (they are checked against the ledger, not metered per unit)."""
    remaining: dict[str, float] = {}
    for use in status(store, key, prices, now):
        if use.quota.unit == COST or use.used is None:
            continue
        rest = max(0.0, use.quota.limit - use.used)
        remaining[use.quota.unit] = min(rest, remaining.get(use.quota.unit, rest))
    return remaining
