"""Admission by load (voicemesh.runtime.load): a real LoadMonitor on a real event loop kept busy by real work.

The busy rule refuses a new stream while the loop runs late *and* its own thread is busy (a loop late by 10 ms
already lets grpc.aio audio streams fall behind); the plain lag limit is off here, so the rule is tested alone.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from voicemesh.errors import ResourceExhausted
from voicemesh.runtime.load import Gate, LoadMonitor


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
