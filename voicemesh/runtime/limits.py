"""Admission limits of a server's streaming RPCs.

- ``max_streams``: streams open at once in this process; one more is refused at once.
- ``max_streams_per_key``: streams open at once per API key (only when the server checks keys).
- ``max_stream_s``: how long one stream may last; past it the stream ends.
- ``idle_timeout_s``: a stream with no message in either direction for that long ends with
  DEADLINE_EXCEEDED.
- ``usage_interval_s``: how often an open stream's usage is written and its key and quotas are
  checked again (``voicemesh.runtime.watch`` enforces these three).

Every refusal, and a stream cut at its time limit, is RESOURCE_EXHAUSTED with a message naming
the limit and its flag (``voicemesh.errors.ResourceExhausted``, retryable: try later or elsewhere).
Zero turns a limit off. Unary RPCs (Describe) and health are never limited.
"""

from __future__ import annotations

import time
from collections import Counter

from voicemesh.errors import ResourceExhausted


class Limits:
    """Counts the open streams of one server (all on its event loop, so no lock)."""

    def __init__(self, *, max_streams: int = 0, max_streams_per_key: int = 0, max_stream_s: float = 0.0,
                 idle_timeout_s: float = 0.0, usage_interval_s: float = 0.0):
        self.max_streams = max_streams
        self.max_streams_per_key = max_streams_per_key
        self.max_stream_s = max_stream_s
        self.idle_timeout_s = idle_timeout_s
        self.usage_interval_s = usage_interval_s
        self.open = 0
        self.per_key: Counter[str] = Counter()

    @classmethod
    def from_settings(cls, settings) -> Limits:
        return cls(max_streams=getattr(settings, "max_streams", 0),
                   max_streams_per_key=getattr(settings, "max_streams_per_key", 0),
                   max_stream_s=getattr(settings, "max_stream_s", 0.0),
                   idle_timeout_s=getattr(settings, "idle_timeout_s", 0.0),
                   usage_interval_s=getattr(settings, "usage_interval_s", 0.0))

    def admit(self, key_id: str = "") -> Slot:
        """Take a slot for a new stream of ``key_id`` ("" without auth) or raise ResourceExhausted."""
        if self.max_streams and self.open >= self.max_streams:
            raise ResourceExhausted(
                f"this server has {self.open} streams open, its limit (--max-streams {self.max_streams}); "
                "try again later or another replica")
        if key_id and self.max_streams_per_key and self.per_key[key_id] >= self.max_streams_per_key:
            raise ResourceExhausted(
                f"API key {key_id} has {self.per_key[key_id]} streams open on this server, its limit "
                f"(--max-streams-per-key {self.max_streams_per_key}); close one first")
        return Slot(self, key_id)


class Slot:
    """One admitted stream: its place in the counts and its time limit."""

    def __init__(self, limits: Limits, key_id: str):
        self.limits = limits
        self.key_id = key_id
        self.deadline = time.monotonic() + limits.max_stream_s if limits.max_stream_s > 0 else None
        limits.open += 1
        if key_id:
            limits.per_key[key_id] += 1
        self._released = False

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self.limits.open -= 1
        if self.key_id:
            self.limits.per_key[self.key_id] -= 1
            if self.limits.per_key[self.key_id] <= 0:
                del self.limits.per_key[self.key_id]

    def expired(self) -> ResourceExhausted:
        return ResourceExhausted(
            f"the stream reached this server's longest stream duration ({self.limits.max_stream_s:g} s, "
            "--max-stream-s); open a new one to go on")
