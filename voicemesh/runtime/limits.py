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

from voicemesh.errors import ResourceExhausted
from voicemesh.runtime.admission import Admission, Ticket


class Limits:
    """The stream limits of one server; open streams are counted by one ``Admission`` (all keys' and each
    key's), so a server's streams and a backend's slots share one admission class."""

    def __init__(self, *, max_streams: int = 0, max_streams_per_key: int = 0, max_stream_s: float = 0.0,
                 idle_timeout_s: float = 0.0, usage_interval_s: float = 0.0):
        self.max_streams = max_streams
        self.max_streams_per_key = max_streams_per_key
        self.max_stream_s = max_stream_s
        self.idle_timeout_s = idle_timeout_s
        self.usage_interval_s = usage_interval_s
        self.streams = Admission(max_streams, "streams", flag=f"--max-streams {max_streams}",
                                 per_key=max_streams_per_key, key_flag=f"--max-streams-per-key {max_streams_per_key}")

    @property
    def open(self) -> int:
        return self.streams.open

    @classmethod
    def from_settings(cls, settings) -> Limits:
        return cls(max_streams=getattr(settings, "max_streams", 0),
                   max_streams_per_key=getattr(settings, "max_streams_per_key", 0),
                   max_stream_s=getattr(settings, "max_stream_s", 0.0),
                   idle_timeout_s=getattr(settings, "idle_timeout_s", 0.0),
                   usage_interval_s=getattr(settings, "usage_interval_s", 0.0))

    def admit(self, key_id: str = "") -> Slot:
        """Take a slot for a new stream of ``key_id`` ("" without auth) or raise ResourceExhausted."""
        return Slot(self, key_id, self.streams.acquire(key_id))


class Slot:
    """One admitted stream: its place in the counts and its time limit."""

    def __init__(self, limits: Limits, key_id: str, ticket: Ticket):
        self.limits = limits
        self.key_id = key_id
        self.ticket = ticket
        self.deadline = time.monotonic() + limits.max_stream_s if limits.max_stream_s > 0 else None

    def release(self) -> None:
        self.ticket.release()

    def expired(self) -> ResourceExhausted:
        return ResourceExhausted(
            f"the stream reached this server's longest stream duration ({self.limits.max_stream_s:g} s, "
            "--max-stream-s); open a new one to go on")
