"""Admission by load (voicemesh.runtime.load): a real LoadMonitor on a real event loop kept busy by real work.

The busy rule refuses a new stream while the loop runs late *and* its own thread is busy (a loop late by 10 ms
already lets grpc.aio audio streams fall behind); the plain lag limit is off here, so the rule is tested alone.
The machine rule refuses while the CPU this server may use (every core, or its container's quota) is busy,
whichever process keeps it so; and streams admitted since the signals were taken count in them.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from voicemesh.errors import ResourceExhausted
from voicemesh.runtime.load import Gate, LoadMonitor, MachineCpu


async def loaded_gate(gate: Gate, work_ms: float, seconds: float = 1.3) -> None:
    """Run the gate's monitor for ``seconds`` while the loop does ``work_ms`` of CPU work between yields."""
    gate.monitor.start()
    until, last = time.monotonic() + seconds, time.monotonic() + 15
    try:
        # At least ``seconds``, and on until the monitor has measured a whole second of CPU: on a busy machine
        # its sampler may not have woken past its first second by then.
        while time.monotonic() < until or (gate.monitor.cpu_cores == 0.0 and time.monotonic() < last):
            start = time.thread_time()
            while time.thread_time() - start < work_ms / 1000:
                pass  # CPU on the loop's thread, as many sessions' per-chunk work is
            await asyncio.sleep(0 if work_ms else 0.05)
    finally:
        await gate.monitor.stop()


def test_a_busy_late_loop_refuses_new_streams_with_overloaded():
    gate = Gate(LoadMonitor("test"), busy_lag_ms=5, busy_loop_cpu=0.05)  # no plain lag limit: this rule alone
    asyncio.run(loaded_gate(gate, work_ms=40))
    assert gate.monitor.loop_cpu > 0.05
    with pytest.raises(ResourceExhausted) as refused:
        gate.check()
    assert refused.value.reason == "OVERLOADED"
    assert "overloaded, retry elsewhere" in refused.value.message and "busy" in refused.value.message


def test_lateness_without_a_busy_loop_thread_is_left_to_the_plain_lag_limit():
    # The same late loop, but the busy rule asks for more CPU than its thread can use: admitted.
    gate = Gate(LoadMonitor("test"), busy_lag_ms=5, busy_loop_cpu=4.0)
    asyncio.run(loaded_gate(gate, work_ms=40))
    assert gate.monitor.lag_s() * 1000 > 5
    gate.check()


def test_an_idle_loop_admits():
    gate = Gate(LoadMonitor("test"), max_lag_ms=200, busy_lag_ms=10, busy_loop_cpu=0.3)
    asyncio.run(loaded_gate(gate, work_ms=0))
    gate.check()


def test_a_busy_machine_refuses_new_streams_whichever_process_keeps_it_busy():
    # Other processes spin on every core the machine has; this server's own loop stays idle.
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        gate = Gate(LoadMonitor("test"), max_machine_cpu=0.5)  # no other limit: this rule alone
        asyncio.run(loaded_gate(gate, work_ms=0, seconds=1.0))
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    assert gate.monitor.machine_busy > 0.5 and gate.monitor.loop_cpu < 0.2
    with pytest.raises(ResourceExhausted) as refused:
        gate.check()
    assert refused.value.reason == "OVERLOADED"
    assert "overloaded, retry elsewhere: the machine's CPU" in refused.value.message
    assert "limit --max-machine-cpu 0.5" in refused.value.message


def test_a_container_quota_is_the_cpu_its_usage_is_measured_against(tmp_path):
    # cgroup v2's files as a container with half a core sees them (cpu.max: quota and period in µs).
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    stat = tmp_path / "cpu.stat"
    stat.write_text("usage_usec 1000000\nuser_usec 800000\nsystem_usec 200000\n")
    machine = MachineCpu(cgroup=tmp_path)
    assert machine.quota and machine.cores == 0.5
    busy_at, total_at = machine.read()
    started = time.monotonic()
    time.sleep(0.2)
    stat.write_text("usage_usec 1090000\nuser_usec 870000\nsystem_usec 220000\n")  # 90 ms of CPU used meanwhile
    busy, total = machine.read()
    elapsed = time.monotonic() - started
    assert busy - busy_at == pytest.approx(0.09)
    assert (busy - busy_at) / (total - total_at) == pytest.approx(0.09 / (elapsed * 0.5), rel=0.05)
    # No quota ("max"): every core of the machine, from /proc/stat.
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert not MachineCpu(cgroup=tmp_path).quota and MachineCpu(cgroup=tmp_path).cores == os.cpu_count()


def test_streams_admitted_since_the_signals_were_taken_count_in_them():
    # Signals taken while 10 streams were open, on average; 19 are open now, so the next makes twice as many.
    gate = Gate(LoadMonitor("test"), busy_lag_ms=5, busy_loop_cpu=0.3)
    gate.monitor.streams, gate.monitor.loop_cpu = 10, 0.2
    gate.monitor.lags.extend([0.004] * 10)  # 4 ms late
    gate.open.calls.update(object() for _ in range(9))
    gate.check()  # 10 open, as when measured: 4 ms and 0.2 cores are under the limits
    gate.open.calls.update(object() for _ in range(10))
    with pytest.raises(ResourceExhausted) as refused:
        gate.check()  # projected onto 20 streams: 8 ms late with 0.4 cores
    assert "busy (0.40 cores) and runs 8.0 ms late" in refused.value.message


def test_a_burst_at_an_idle_server_counts_each_stream_at_what_it_cost_before():
    # The signals of an idle server show nothing of the streams a burst opens at once. What a stream cost the
    # last time four or more were open (over the server's idle CPU) sets how many the burst may open.
    gate = Gate(LoadMonitor("test"), max_cpu=0.5)
    monitor = gate.monitor
    for streams, cpu in ((0, 0.02), (10, 0.22), (0, 0.02)):  # idle, then 10 streams (0.02 cores each), idle again
        monitor.streams, monitor.cpu_cores, monitor.loop_cpu = streams, cpu, cpu / 2
        monitor.learn_costs()
    assert monitor.cpu_per_stream == pytest.approx(0.02) and monitor.loop_cpu_per_stream == pytest.approx(0.01)
    admitted = 0
    with pytest.raises(ResourceExhausted) as refused:
        while admitted < 100:
            gate.check()
            gate.open.calls.add(object())
            admitted += 1
    assert admitted == 24, admitted  # 0.02 idle + 24 x 0.02 = 0.50 cores; the 25th makes 0.52
    assert "this server uses 0.52 cores (limit --max-cpu 0.5)" in refused.value.message
    # A server that never had four streams open has no cost to go on: its signals alone decide.
    fresh = Gate(LoadMonitor("test"), max_cpu=0.5)
    fresh.open.calls.update(object() for _ in range(100))
    fresh.check()


def test_where_the_machines_cpu_cannot_be_read_the_monitor_still_measures_the_loop(tmp_path):
    # As on a machine without /proc (not Linux): the machine rule has nothing to go on, the rest works.
    machine = MachineCpu(cgroup=tmp_path, proc_stat=tmp_path / "no-such-stat")
    assert not machine.available and machine.read() == (0.0, 0.0)
    gate = Gate(LoadMonitor("test", machine=machine), busy_lag_ms=5, busy_loop_cpu=0.05, max_machine_cpu=0.5)
    asyncio.run(loaded_gate(gate, work_ms=40))
    assert gate.monitor.machine_busy == 0.0 and gate.monitor.loop_cpu > 0.05
    with pytest.raises(ResourceExhausted, match="busy"):
        gate.check()
