"""Usage reports: ledger records grouped by model, session, day, key or service, with cost."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections import defaultdict
from collections.abc import Iterable

from voicemesh.metering.prices import PriceTable
from voicemesh.metering.records import UNITS, UsageRecord

GROUPS = ("model", "session", "day", "key", "service")
_COLUMNS = {"model": "model", "session": "session_id", "key": "key_id", "service": "service"}


def group_of(record: UsageRecord, by: str) -> str:
    if by == "day":
        return dt.datetime.fromtimestamp(record.time, dt.UTC).strftime("%Y-%m-%d")
    return getattr(record, _COLUMNS[by]) or "-"


def summarize(records: Iterable[UsageRecord], by: str, prices: PriceTable | None) -> tuple[list[dict], dict]:
    """(rows, total): per group the record count, unit sums and cost (None when a model has no price)."""
    sums: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(lambda: dict.fromkeys(UNITS, 0)))
    counts: dict[str, int] = defaultdict(int)
    for record in records:
        group = group_of(record, by)
        counts[group] += 1
        per_model = sums[group][record.model]
        for unit, amount in record.units().items():
            per_model[unit] += amount
    rows = [_row(by, group, counts[group], sums[group], prices) for group in sorted(sums)]
    everything: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(UNITS, 0))
    for per_group in sums.values():
        for model, units in per_group.items():
            for unit, amount in units.items():
                everything[model][unit] += amount
    return rows, _row(by, "TOTAL", sum(counts.values()), everything, prices)


def _row(by: str, group: str, count: int, per_model: dict[str, dict[str, float]], prices: PriceTable | None) -> dict:
    row: dict = {by: group, "records": count}
    for unit in UNITS:
        row[unit] = sum(units[unit] for units in per_model.values())
    if prices is not None:
        costs = [prices.cost(model, units) for model, units in per_model.items()]
        row["cost"] = None if any(c is None for c in costs) else sum(costs)  # type: ignore[arg-type]
        row["unpriced"] = sorted(m for m, c in zip(per_model, costs, strict=True) if c is None)
    return row


def _text(value) -> str:
    if value is None:
        return "?"
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".") if value else "0"
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def render(rows: list[dict], total: dict, fmt: str, currency: str = "") -> str:
    """The report as ``table``, ``csv`` or ``json`` text."""
    if fmt == "json":
        return json.dumps({"rows": rows, "total": total, "currency": currency or None}, indent=2)
    columns = list(total)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _text(v) if isinstance(v, list) else v for k, v in row.items()})
        return out.getvalue().rstrip("\n")
    header = [c if c != "cost" or not currency else f"cost ({currency})" for c in columns]
    table = [header] + [[_text(row[c]) for c in columns] for row in [*rows, total]]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
             for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.insert(len(lines) - 1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
