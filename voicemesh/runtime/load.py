"""Admission of new streams by the server's load, and refusal while it drains.

A server whose event loop runs late serves every open stream late: one more
stream would make all of them fall further behind real time. So each server
measures its load (``LoadMonitor``): how late the event loop wakes from a
short sleep (its lag), the CPU the process used, the CPU of the loop's own
thread, and how busy the CPU this server may use is (the machine's, or its
container's quota). Past a threshold (a lag, a CPU, a smaller lag while the
loop's thread is busy: the orchestrator's audio sessions fall behind long
before the plain lag limit, or a share of the machine's CPU) a *new* stream
is refused with RESOURCE_EXHAUSTED, "overloaded, retry elsewhere", which the
SDK and the mesh's target picking take as a cue to try another replica. An
admitted stream is never refused.

While the server drains (after SIGTERM) a new stream is refused with
UNAVAILABLE, "draining", so a client reconnects elsewhere instead of seeing
the connection refused (``Gate.draining``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from pathlib import Path

from prometheus_client import Gauge

from voicemesh.errors import ResourceExhausted, Unavailable
from voicemesh.runtime.drain import OpenStreams

log = logging.getLogger(__name__)

LOOP_LAG = Gauge("voicemesh_event_loop_lag_seconds", "Mean lateness of the event loop over the last second",
                 ["service"])
CPU = Gauge("voicemesh_process_cpu_cores", "CPU the process used over the last half second, in cores", ["service"])
MACHINE_CPU = Gauge("voicemesh_machine_cpu_busy_ratio", "Share of the CPU this server may use (its container's "
                    "quota, else the machine's cores) that was busy over the last half second", ["service"])

CGROUP = Path("/sys/fs/cgroup")


class MachineCpu:
    """The CPU this server may use, and how much of it is busy: a cgroup v2 quota (``cpu.max``) when the
    container has one, counting the container's own usage; else every core of the machine (``/proc/stat``),
    counting whatever runs on it. Where neither can be read (not Linux), ``available`` is False and the
    share reads as 0."""

    def __init__(self, cgroup: Path = CGROUP, proc_stat: Path = Path("/proc/stat")):
        self.cgroup, self.proc_stat = cgroup, proc_stat
        self.cores = float(os.cpu_count() or 1)
        self.quota = False
        try:
            quota, period = (cgroup / "cpu.max").read_text().split()[:2]
            if quota != "max":
                self.cores, self.quota = int(quota) / int(period), True
        except (OSError, ValueError):
            pass
        self.available = True
        try:
            self.read()
        except (OSError, ValueError, IndexError) as exc:
            log.info("the machine's CPU cannot be measured here (%s): --max-machine-cpu has no effect", exc)
            self.available = False

    def read(self) -> tuple[float, float]:
        """(busy, total) counters; their growth over a window is the busy share of that window."""
        if not self.available:
            return 0.0, 0.0
        if self.quota:
            for line in (self.cgroup / "cpu.stat").read_text().splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6, time.monotonic() * self.cores
            raise ValueError(f"no usage_usec in {self.cgroup / 'cpu.stat'}")
        with self.proc_stat.open() as stat:
            ticks = [int(x) for x in stat.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
        return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


class LoadMonitor:
    """Samples the event loop's lag every ``every_s``, the process's and the machine's CPU, and the streams open.

    A sleep of ``every_s`` that wakes late by L seconds means every callback on the loop waited about L:
    that is the delay an audio chunk of an open stream sees on top of its real work.

    Sessions arrive faster than a one-second mean moves: at 32 arrivals a second, a gate that reads only
    one-second means admits ~30 sessions past the point where the mesh fell behind (``bench/load.py
    --arrivals-per-s``). So the busy rule also reads the lag over the last ``recent`` samples, the CPU is
    read over the last ``cpu_window_s``, and ``streams`` (the mean number of streams open over that same
    window) lets the gate project them onto the streams open now (``Gate.check``).

    A burst that reaches an idle server moves none of those signals before it is admitted. So the monitor
    also remembers what a stream cost the last time four or more were open (``cpu_per_stream``,
    ``loop_cpu_per_stream``: the CPU over what the server uses with none open), and the gate counts the
    streams open now at that cost.
    """

    def __init__(self, service: str = "", *, every_s: float = 0.1, window: int = 10, recent: int = 3,
                 cpu_window_s: float = 0.5, machine: MachineCpu | None = None):
        self.every_s = every_s
        self.lags: deque[float] = deque(maxlen=window)
        self.recent = recent
        self.cpu_window_s = cpu_window_s
        self.machine = machine or MachineCpu()
        self.cpu_cores = 0.0
        self.loop_cpu = 0.0  # CPU of the event loop's own thread over the CPU window, in cores
        self.machine_busy = 0.0  # busy share of the CPU this server may use, over the CPU window
        self.streams = 0.0  # mean streams open over the CPU window
        # With no stream open: the process's and the loop's CPU (its own background work), in cores.
        self.idle_cpu = self.idle_loop_cpu = 0.0
        # What one stream cost the last time four or more were open, over the idle figures; 0 until then.
        self.cpu_per_stream = self.loop_cpu_per_stream = 0.0
        self.count_streams = lambda: 0  # the gate's count of open streams
        self._marks: deque[tuple] = deque()  # (wall, process CPU, loop CPU, streams, machine busy, machine total)
        self._wake_at = 0.0  # when the sampling sleep should end (0: not sleeping)
        self._lag_gauge = LOOP_LAG.labels(service)
        self._cpu_gauge = CPU.labels(service)
        self._machine_gauge = MACHINE_CPU.labels(service)
        self._task: asyncio.Task | None = None

    def lag_s(self, recent: bool = False) -> float:
        """Mean lag of the last second, or with ``recent`` that of the last few samples when worse; a loop late
        right now (the sampler has not woken yet) counts too."""
        lags = list(self.lags)
        mean = sum(lags) / len(lags) if lags else 0.0
        if recent and lags:
            mean = max(mean, sum(lags[-self.recent:]) / len(lags[-self.recent:]))
        return max(mean, time.monotonic() - self._wake_at if self._wake_at else 0.0)

    def start(self) -> None:
        self._task = asyncio.create_task(self._sample(), name="load-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _mark(self) -> None:
        # Taken on the loop's thread, so thread_time() is the loop's own CPU.
        try:
            machine = self.machine.read()
        except (OSError, ValueError, IndexError) as exc:  # read before: a file that went away since
            log.warning("stopped measuring the machine's CPU: %s", exc)
            self.machine.available, machine = False, (0.0, 0.0)
        self._marks.append((time.monotonic(), time.process_time(), time.thread_time(), self.count_streams(),
                            *machine))

    async def _sample(self) -> None:
        self._mark()
        while True:
            self._wake_at = time.monotonic() + self.every_s
            await asyncio.sleep(self.every_s)
            now = time.monotonic()
            self.lags.append(max(0.0, now - self._wake_at))
            self._wake_at = 0.0
            self._lag_gauge.set(sum(self.lags) / len(self.lags))
            self._mark()
            while len(self._marks) > 2 and now - self._marks[1][0] >= self.cpu_window_s:
                self._marks.popleft()
            first, last = self._marks[0], self._marks[-1]
            if now - first[0] >= self.cpu_window_s:
                wall = now - first[0]
                self.cpu_cores = (last[1] - first[1]) / wall
                self.loop_cpu = (last[2] - first[2]) / wall
                self.streams = sum(mark[3] for mark in self._marks) / len(self._marks)
                self.machine_busy = (last[4] - first[4]) / max(last[5] - first[5], 1e-9)
                self.learn_costs()
                self._cpu_gauge.set(self.cpu_cores)
                self._machine_gauge.set(self.machine_busy)

    def learn_costs(self) -> None:
        """Note the idle CPU (no stream open over the window) or, with four or more open, one stream's cost."""
        if self.streams == 0:
            self.idle_cpu, self.idle_loop_cpu = self.cpu_cores, self.loop_cpu
        elif self.streams >= 4:
            self.cpu_per_stream = max(0.0, self.cpu_cores - self.idle_cpu) / self.streams
            self.loop_cpu_per_stream = max(0.0, self.loop_cpu - self.idle_loop_cpu) / self.streams


class Gate:
    """Whether this server takes a new stream now: not while draining, not while overloaded."""

    def __init__(self, monitor: LoadMonitor | None = None, *, max_lag_ms: float = 0.0, max_cpu: float = 0.0,
                 busy_lag_ms: float = 0.0, busy_loop_cpu: float = 0.0, max_machine_cpu: float = 0.0):
        self.monitor = monitor
        self.max_lag_ms = max_lag_ms
        self.max_cpu = max_cpu
        # A loop busy with its own streams (``busy_loop_cpu`` cores on its thread) that runs ``busy_lag_ms``
        # late is at its capacity: see ``check``. Both 0: no such limit.
        self.busy_lag_ms, self.busy_loop_cpu = busy_lag_ms, busy_loop_cpu
        self.max_machine_cpu = max_machine_cpu
        self.draining = False
        self.open = OpenStreams()  # what a drain waits for and closes
        if monitor is not None:
            monitor.count_streams = lambda: len(self.open.calls)

    @classmethod
    def from_settings(cls, settings, service: str) -> Gate:
        return cls(LoadMonitor(service), max_lag_ms=getattr(settings, "max_loop_lag_ms", 0.0),
                   max_cpu=getattr(settings, "max_cpu", 0.0), busy_lag_ms=getattr(settings, "busy_loop_lag_ms", 0.0),
                   busy_loop_cpu=getattr(settings, "busy_loop_cpu", 0.0),
                   max_machine_cpu=getattr(settings, "max_machine_cpu", 0.0))

    def check(self) -> None:
        """Raise Unavailable while draining, ResourceExhausted when overloaded; return to admit."""
        if self.draining:
            raise Unavailable("this server is draining (shutting down): open the stream on another replica",
                              reason="DRAINING")
        monitor = self.monitor
        if monitor is None:
            return
        lag_ms = monitor.lag_s() * 1000
        if self.max_lag_ms > 0 and lag_ms > self.max_lag_ms:
            self._refuse(f"this server's event loop runs {lag_ms:.0f} ms late (limit --max-loop-lag-ms "
                         f"{self.max_lag_ms:g})")
        # The other signals are a few tenths of a second old: streams admitted since then do not show in them
        # yet. Each stream costs about the same, so they are read scaled to the streams open now plus this one.
        grown = self._growth()
        busy_lag_ms = monitor.lag_s(recent=True) * 1000 * grown
        loop_cpu, cpu = monitor.loop_cpu * grown, monitor.cpu_cores * grown
        # A burst at an idle server shows in no signal yet: the streams open now, at what each cost before.
        opened = len(self.open.calls) + 1
        loop_cpu = max(loop_cpu, monitor.idle_loop_cpu + opened * monitor.loop_cpu_per_stream)
        cpu = max(cpu, monitor.idle_cpu + opened * monitor.cpu_per_stream)
        machine = monitor.machine_busy + (cpu - monitor.cpu_cores) / monitor.machine.cores
        # Streaming over grpc.aio, a stream takes its next message only after the loop came round to it: a loop
        # that comes round late by half a 20 ms audio chunk already lets every stream fall behind real time, long
        # before ``max_lag_ms``. Lateness alone is no proof of that (a loop starved by other processes is late
        # too, and an idle one on a busy machine); lateness while the loop's own thread is busy is.
        if self.busy_lag_ms > 0 and busy_lag_ms > self.busy_lag_ms and loop_cpu > self.busy_loop_cpu:
            self._refuse(f"this server's event loop is busy ({loop_cpu:.2f} cores) and runs {busy_lag_ms:.1f} ms "
                         f"late (limit --busy-loop-lag-ms {self.busy_lag_ms:g})")
        if self.max_cpu > 0 and cpu > self.max_cpu:
            self._refuse(f"this server uses {cpu:.2f} cores (limit --max-cpu {self.max_cpu:g})")
        # Every process on the machine (or in the container) competes for the same cores: past ~70% busy the
        # scheduler already makes audio streams wait (bench/load.py), whichever process is the busy one.
        if self.max_machine_cpu > 0 and machine > self.max_machine_cpu:
            where = "its container's CPU quota" if monitor.machine.quota else "the machine's CPU"
            self._refuse(f"{where} ({monitor.machine.cores:g} cores) is {machine:.0%} busy (limit "
                         f"--max-machine-cpu {self.max_machine_cpu:g})")

    def _refuse(self, why: str) -> None:
        log.warning("refused a new stream with %d open: %s", len(self.open.calls), why)
        raise ResourceExhausted(f"overloaded, retry elsewhere: {why}", reason="OVERLOADED")

    def _growth(self) -> float:
        """Streams open now, this new one included, over those open on average while the signals were taken;
        1 when as many or fewer, or when fewer than 4 were open then (a few streams' signals are mostly the
        server's own background work, and a few arrivals cannot overshoot far)."""
        then = self.monitor.streams
        return max(1.0, (len(self.open.calls) + 1) / then) if then >= 4 else 1.0
