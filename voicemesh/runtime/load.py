"""Admission of new streams by the server's own load, and refusal while it drains.

A server whose event loop runs late serves every open stream late: one more
stream would make all of them fall further behind real time. So each server
measures its own load (``LoadMonitor``): how late the event loop wakes from a
short sleep (its lag, averaged over the last second), the CPU the process
used and the CPU of the loop's own thread. Past a threshold (a lag, a CPU, or
a smaller lag while the loop's thread is busy: the orchestrator's audio
sessions fall behind long before the plain lag limit) a *new* stream is
refused with RESOURCE_EXHAUSTED,
"overloaded, retry elsewhere", which the SDK and the mesh's target picking
take as a cue to try another replica. An admitted stream is never refused.

While the server drains (after SIGTERM) a new stream is refused with
UNAVAILABLE, "draining", so a client reconnects elsewhere instead of seeing
the connection refused (``Gate.draining``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from prometheus_client import Gauge

from voicemesh.errors import ResourceExhausted, Unavailable
from voicemesh.runtime.drain import OpenStreams

log = logging.getLogger(__name__)

LOOP_LAG = Gauge("voicemesh_event_loop_lag_seconds", "Mean lateness of the event loop over the last second",
                 ["service"])
CPU = Gauge("voicemesh_process_cpu_cores", "CPU the process used over the last second, in cores", ["service"])


class LoadMonitor:
    """Samples the event loop's lag every ``every_s`` and the process CPU every second.

    A sleep of ``every_s`` that wakes late by L seconds means every callback on the loop waited about L:
    that is the delay an audio chunk of an open stream sees on top of its real work.
    """

    def __init__(self, service: str = "", *, every_s: float = 0.1, window: int = 10):
        self.every_s = every_s
        self.lags: deque[float] = deque(maxlen=window)
        self.cpu_cores = 0.0
        self.loop_cpu = 0.0  # CPU of the event loop's own thread over the last second, in cores
        self._wake_at = 0.0  # when the sampling sleep should end (0: not sleeping)
        self._lag_gauge = LOOP_LAG.labels(service)
        self._cpu_gauge = CPU.labels(service)
        self._task: asyncio.Task | None = None

    def lag_s(self) -> float:
        """Mean lag of the last second; a loop late right now (the sampler has not woken yet) counts too."""
        mean = sum(self.lags) / len(self.lags) if self.lags else 0.0
        late_now = time.monotonic() - self._wake_at if self._wake_at else 0.0
        return max(mean, late_now)

    def start(self) -> None:
        self._task = asyncio.create_task(self._sample(), name="load-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _sample(self) -> None:
        # This task runs on the loop's thread, so thread_time() is the loop's own CPU.
        cpu_at, loop_at, wall_at = time.process_time(), time.thread_time(), time.monotonic()
        while True:
            self._wake_at = time.monotonic() + self.every_s
            await asyncio.sleep(self.every_s)
            now = time.monotonic()
            self.lags.append(max(0.0, now - self._wake_at))
            self._wake_at = 0.0
            self._lag_gauge.set(sum(self.lags) / len(self.lags))
            if now - wall_at >= 1.0:
                cpu, loop_cpu = time.process_time(), time.thread_time()
                self.cpu_cores = (cpu - cpu_at) / (now - wall_at)
                self.loop_cpu = (loop_cpu - loop_at) / (now - wall_at)
                self._cpu_gauge.set(self.cpu_cores)
                cpu_at, loop_at, wall_at = cpu, loop_cpu, now


class Gate:
    """Whether this server takes a new stream now: not while draining, not while overloaded."""

    def __init__(self, monitor: LoadMonitor | None = None, *, max_lag_ms: float = 0.0, max_cpu: float = 0.0,
                 busy_lag_ms: float = 0.0, busy_loop_cpu: float = 0.0):
        self.monitor = monitor
        self.max_lag_ms = max_lag_ms
        self.max_cpu = max_cpu
        # A loop busy with its own streams (``busy_loop_cpu`` cores on its thread) that runs ``busy_lag_ms``
        # late is at its capacity: see ``check``. Both 0: no such limit.
        self.busy_lag_ms, self.busy_loop_cpu = busy_lag_ms, busy_loop_cpu
        self.draining = False
        self.open = OpenStreams()  # what a drain waits for and closes

    @classmethod
    def from_settings(cls, settings, service: str) -> Gate:
        return cls(LoadMonitor(service), max_lag_ms=getattr(settings, "max_loop_lag_ms", 0.0),
                   max_cpu=getattr(settings, "max_cpu", 0.0), busy_lag_ms=getattr(settings, "busy_loop_lag_ms", 0.0),
                   busy_loop_cpu=getattr(settings, "busy_loop_cpu", 0.0))

    def check(self) -> None:
        """Raise Unavailable while draining, ResourceExhausted when overloaded; return to admit."""
        if self.draining:
            raise Unavailable("this server is draining (shutting down): open the stream on another replica",
                              reason="DRAINING")
        if self.monitor is None:
            return
        lag_ms = self.monitor.lag_s() * 1000
        if self.max_lag_ms > 0 and lag_ms > self.max_lag_ms:
            log.warning("refused a new stream: event loop lag %.0f ms (limit --max-loop-lag-ms %g)",
                        lag_ms, self.max_lag_ms)
            raise ResourceExhausted(f"overloaded, retry elsewhere: this server's event loop runs {lag_ms:.0f} ms "
                                    f"late (limit --max-loop-lag-ms {self.max_lag_ms:g})", reason="OVERLOADED")
        # Streaming over grpc.aio, a stream takes its next message only after the loop came round to it: a loop
        # that comes round late by half a 20 ms audio chunk already lets every stream fall behind real time, long
        # before ``max_lag_ms``. Lateness alone is no proof of that (a loop starved by other processes is late
        # too, and an idle one on a busy machine); lateness while the loop's own thread is busy is.
        if (self.busy_lag_ms > 0 and lag_ms > self.busy_lag_ms and self.monitor.loop_cpu > self.busy_loop_cpu):
            log.warning("refused a new stream: event loop lag %.0f ms while it uses %.2f cores (limits "
                        "--busy-loop-lag-ms %g, --busy-loop-cpu %g)", lag_ms, self.monitor.loop_cpu,
                        self.busy_lag_ms, self.busy_loop_cpu)
            raise ResourceExhausted(f"overloaded, retry elsewhere: this server's event loop is busy "
                                    f"({self.monitor.loop_cpu:.2f} cores) and runs {lag_ms:.0f} ms late (limit "
                                    f"--busy-loop-lag-ms {self.busy_lag_ms:g})", reason="OVERLOADED")
        if self.max_cpu > 0 and self.monitor.cpu_cores > self.max_cpu:
            log.warning("refused a new stream: CPU %.2f cores (limit --max-cpu %g)",
                        self.monitor.cpu_cores, self.max_cpu)
            raise ResourceExhausted(f"overloaded, retry elsewhere: this server uses {self.monitor.cpu_cores:.2f} "
                                    f"cores (limit --max-cpu {self.max_cpu:g})", reason="OVERLOADED")
