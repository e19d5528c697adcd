"""The price table: what one unit of usage costs, per model descriptor.

A JSON (or TOML) file::

    {"currency": "USD",
     "prices": {"openai/gpt-4.1-mini": {"input_tokens": 4e-7, "cached_tokens": 1e-7, "output_tokens": 1.6e-6},
                "faster-whisper/*": {"audio_seconds_in": 0.0001}}}

Prices are per unit (per second of audio, per token, per character). A
model's price is found by its full descriptor, then without the variant
(``openai/tts-1:alloy`` -> ``openai/tts-1``), then ``provider/*``, then
``*``. ``input_tokens`` includes cached tokens; when a ``cached_tokens`` price
is given, cached tokens are billed at it instead of the input price. Cost is
computed from the ledger when asked for, never stored.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from voicemesh.descriptors import split
from voicemesh.metering.records import UNITS
from voicemesh.settings import environ

PRICES_ENV = "VOICEMESH_PRICES"
EXAMPLE = Path(__file__).with_name("prices.example.json")


@dataclass(frozen=True)
class PriceTable:
    """Prices per model pattern and unit."""

    prices: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    currency: str = "USD"

    @classmethod
    def load(cls, path: str | Path) -> PriceTable:
        """Read and check a price file (ValueError naming the problem)."""
        path = Path(path).expanduser()
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("prices"), dict):
            raise ValueError(f"{path}: a price file has a 'prices' table: model -> unit -> price")
        prices: dict[str, dict[str, float]] = {}
        for model, units in data["prices"].items():
            if not isinstance(units, dict):
                raise ValueError(f"{path}: prices of {model!r} must be a table unit -> price")
            for unit, price in units.items():
                if unit not in UNITS:
                    raise ValueError(f"{path}: unknown unit {unit!r} for {model!r}; units: {', '.join(UNITS)}")
                if isinstance(price, bool) or not isinstance(price, int | float) or price < 0:
                    raise ValueError(f"{path}: price of {unit} for {model!r} must be a number >= 0")
            prices[model] = {unit: float(price) for unit, price in units.items()}
        return cls(prices=prices, currency=str(data.get("currency", "USD")))

    @classmethod
    def from_setting(cls, path: str | Path | None) -> PriceTable | None:
        """The table at ``path`` or $VOICEMESH_PRICES, or None when neither is set."""
        chosen = path or environ(PRICES_ENV)
        return cls.load(chosen) if chosen else None

    def price_of(self, model: str) -> Mapping[str, float] | None:
        """The unit prices of a model descriptor, or None when no pattern matches."""
        parts = split(model)
        provider = parts.provider
        base = model.rpartition(":")[0] if parts.variant is not None else model
        for pattern in (model, base, f"{provider}/*", "*"):
            if pattern in self.prices:
                return self.prices[pattern]
        return None

    def cost(self, model: str, units: Mapping[str, float]) -> float | None:
        """Cost of ``units`` of usage of ``model``; None when the model has no price."""
        price = self.price_of(model)
        if price is None:
            return None
        total = 0.0
        for unit in UNITS:
            amount = units.get(unit, 0) or 0
            if unit == "input_tokens" and "cached_tokens" in price:
                amount -= units.get("cached_tokens", 0) or 0
            if unit == "cached_tokens" and "cached_tokens" not in price:
                continue  # already billed as input tokens
            total += amount * price.get(unit, 0.0)
        return total
