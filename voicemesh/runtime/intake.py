"""Client audio at up to a few times real time: the rest is dropped and counted.

A client streams its microphone at real time; one that pushes minutes of audio in a
second would make a session buffer all of it (the queue of client messages, the STT
sender, the VAD). ``AudioIntake`` is a token bucket in samples: it refills at
``factor`` x real time up to ``burst_s`` of audio, and each audio message takes its
length out of it. A message that finds too little is dropped whole (audio is never
cut mid-message), counted, logged (the first drop at once, then a summary at most
every ``LOG_EVERY_S``) and added to ``voicemesh_audio_dropped_seconds_total``.

So a session holds at most ``burst_s`` of audio ahead of real time plus what the
pipeline drains, however fast a client sends. A real-time client that falls behind
(a stalled network) catches up with a burst of up to ``burst_s``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from voicemesh.runtime import metrics

log = logging.getLogger(__name__)

DEFAULT_FACTOR = 2.0  # times real time a client may send audio at, on average
DEFAULT_BURST_S = 5.0  # seconds of audio a client may send at once (a catch-up after a stall)
LOG_EVERY_S = 5.0


class AudioIntake:
    """Admits one stream's audio messages at up to ``factor`` x real time (plus a burst)."""

    def __init__(self, rate_hz: int, *, factor: float = DEFAULT_FACTOR, burst_s: float = DEFAULT_BURST_S,
                 service: str = "orchestrator", clock: Callable[[], float] = time.monotonic):
        self.rate_hz = rate_hz
        self.factor = factor
        self.capacity = burst_s * rate_hz  # samples
        self.service = service
        self._clock = clock
        self._tokens = self.capacity
        self._last = clock()
        self.dropped_samples = 0
        self.dropped_messages = 0
        self._logged_at: float | None = None
        self._logged_samples = 0

    @property
    def dropped_s(self) -> float:
        return self.dropped_samples / self.rate_hz

    def admit(self, samples: int) -> bool:
        """True if an audio message of ``samples`` may go on; False if it is dropped (and counted)."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.factor * self.rate_hz)
        self._last = now
        if samples <= self._tokens:
            self._tokens -= samples
            return True
        self.dropped_samples += samples
        self.dropped_messages += 1
        metrics.AUDIO_DROPPED_SECONDS.labels(self.service).inc(samples / self.rate_hz)
        if self._logged_at is None or now - self._logged_at >= LOG_EVERY_S:
            log.warning("client audio arrives faster than %g x real time: dropped %d message(s), %.1f s of audio "
                        "so far (%.1f s since the last note)", self.factor, self.dropped_messages, self.dropped_s,
                        (self.dropped_samples - self._logged_samples) / self.rate_hz)
            self._logged_at, self._logged_samples = now, self.dropped_samples
        return False
