"""The plain values the ledger stores: API keys, quotas and usage records."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

# Metered units, in the order reports show them. Names are the fields of voicemesh.v1.Usage.
UNITS = ("audio_seconds_in", "audio_seconds_out", "input_tokens", "output_tokens", "cached_tokens", "characters",
         "video_seconds_out")
# Quota periods: a calendar day or month in UTC, or the key's whole life.
PERIODS = ("day", "month", "total")
# A quota on cost (with the price table) rather than on a unit.
COST = "cost"


@dataclass(frozen=True)
class Quota:
    """A limit on one unit (or on ``cost``) per period."""

    unit: str
    limit: float
    period: str = "total"

    def __post_init__(self) -> None:
        if self.unit not in (*UNITS, COST):
            raise ValueError(f"unknown quota unit {self.unit!r}; use one of {', '.join((*UNITS, COST))}")
        if self.period not in PERIODS:
            raise ValueError(f"unknown quota period {self.period!r}; use one of {', '.join(PERIODS)}")
        if not self.limit >= 0:
            raise ValueError(f"a quota limit must be a number >= 0, not {self.limit!r}")

    def __str__(self) -> str:
        return f"{self.unit}={self.limit:g}/{self.period}"

    @classmethod
    def parse(cls, text: str) -> Quota:
        """``unit=limit[/period]``, for example ``audio_seconds_in=3600/day`` or ``cost=5/month``."""
        unit, sep, rest = text.strip().partition("=")
        if not sep:
            raise ValueError(f"a quota looks like unit=limit[/period], not {text!r}")
        limit, _, period = rest.partition("/")
        try:
            value = float(limit)
        except ValueError:
            raise ValueError(f"quota limit {limit!r} is not a number (in {text!r})") from None
        return cls(unit.strip(), value, period.strip() or "total")

    def to_dict(self) -> dict:
        return {"unit": self.unit, "limit": self.limit, "period": self.period}


@dataclass(frozen=True)
class KeyRecord:
    """An API key as the ledger knows it: never the key itself, only its salted hash."""

    id: str
    name: str
    salt: str
    hash: str
    created: float
    expires: float | None = None
    revoked: float | None = None
    quotas: tuple[Quota, ...] = ()

    def state(self, now: float | None = None) -> str:
        """``active``, ``revoked`` or ``expired``."""
        now = time.time() if now is None else now
        if self.revoked is not None:
            return "revoked"
        if self.expires is not None and self.expires <= now:
            return "expired"
        return "active"


@dataclass(frozen=True)
class UsageRecord:
    """One Usage message a service emitted, with who and what it belongs to.

    ``id`` is unique per emitted message, so writing the same record twice
    (a retry, a replayed spool) never counts it twice.
    """

    key_id: str
    session_id: str
    service: str
    model: str
    turn: int = 0
    audio_seconds_in: float = 0.0
    audio_seconds_out: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    characters: int = 0
    video_seconds_out: float = 0.0  # avatar video (frames / fps)
    time: float = field(default_factory=time.time)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def units(self) -> dict[str, float]:
        return {unit: getattr(self, unit) for unit in UNITS}
