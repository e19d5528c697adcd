"""Soak: sequential sessions through the orchestrator for a bounded time leave nothing behind.

VOICEMESH_SOAK_S seconds (default 60; longer by setting it) of sessions, one after another, each with
a spoken-to reply (LLM and TTS) and some user audio (STT); half end by half-close, half by the client
vanishing (cancel). After warm-up, and again at the end, every service must have no stream open
(voicemesh_streams_open), and the thread count and RSS of every process must not grow.

Tolerances: threads may differ by 2 (gRPC and the executors start threads lazily, up to their bound;
a thread per session would exceed 2 within the run); RSS may grow by 8 MB plus 1 MB per session
after warm-up: allocator arenas and caches move by a few MB without a leak, while a session that
leaks its buffers, chat history, gRPC calls or tasks (hundreds of KB to MBs each) exceeds that
within a run of tens of sessions. A longer VOICEMESH_SOAK_S makes the check sharper.
"""

from __future__ import annotations

import asyncio
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.orchestrator.client import LLM, TTS, AgentClient, session_config
from tests.speech import noise
from voicemesh.audio import chunks
from voicemesh.mesh import MeshConfig
from voicemesh.process import ServiceProcess, free_port

pytestmark = pytest.mark.slow

SOAK_S = float(os.environ.get("VOICEMESH_SOAK_S", "60"))
WARMUP_SESSIONS = 3
ARGS = {
    "stt": ["--workers", "1", "--threads", "1"],
    "llm": ["--preload", LLM, "--llama-threads", "1", "--temperature", "0"],
    "tts": ["--preload", TTS, "--piper-workers", "1"],
}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def streams_open(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("voicemesh_streams_open{"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[dict[str, tuple[ServiceProcess, int]]]:
    logs = tmp_path_factory.mktemp("soak")
    ports = {name: free_port() for name in (*ARGS, "orchestrator")}
    procs: dict[str, ServiceProcess] = {}
    try:
        for name, extra in ARGS.items():
            procs[name] = ServiceProcess(name, args=["--metrics-port", str(ports[name]), *extra],
                                         log_path=logs / f"{name}.log").start()
        for proc in procs.values():
            proc.wait_serving()
        mesh = logs / "mesh.json"
        MeshConfig({m: {"*": [procs[m].address]} for m in ARGS}).write(mesh)
        procs["orchestrator"] = ServiceProcess(
            "orchestrator", args=["--metrics-port", str(ports["orchestrator"]), "--mesh", str(mesh),
                                  "--max-tokens", "24"], log_path=logs / "orchestrator.log").start().wait_serving()
        yield {name: (proc, ports[name]) for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            proc.stop()


async def one_session(address: str, index: int) -> None:
    async with AgentClient(address, session_config()) as s:
        for piece in chunks(noise(1.0, seed=index), rate=16000, ms=20):
            s.send(audio=piece)
        s.send(text="Say hello.")
        done = await s.turn_done(1, timeout=120)
        assert done.text and s.agent_audio(1), s.of("error")
        assert not s.of("error"), s.of("error")
        if index % 2 == 0:  # half-close and wait for the server to end the stream; else the client vanishes
            s.close()
            deadline = time.monotonic() + 30
            while not s.call.done() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert s.call.done(), "the session did not end after the client half-closed"


async def settle(stack, timeout: float = 15.0) -> dict[str, float]:
    """Wait until no service has a stream open; return what is still open then."""
    deadline = time.monotonic() + timeout
    while True:
        left = {name: streams_open(port) for name, (_, port) in stack.items()}
        if not any(left.values()) or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.1)


def snapshot(stack) -> dict[str, tuple[int, float]]:
    return {name: (thread_count(proc.proc.pid), rss_mb(proc.proc.pid)) for name, (proc, _) in stack.items()}


@pytest.mark.flaky(reruns=1)  # a leak grows again on the rerun; one run's allocator noise (33.3 vs 32 MB once) does not
async def test_soak_sessions_leave_no_streams_threads_or_memory_behind(stack):
    address = stack["orchestrator"][0].address
    for index in range(WARMUP_SESSIONS):
        await one_session(address, index)
    assert await settle(stack) == {name: 0.0 for name in stack}
    base = snapshot(stack)

    sessions, end = 0, time.monotonic() + SOAK_S
    while time.monotonic() < end:
        await one_session(address, WARMUP_SESSIONS + sessions)
        sessions += 1
    left = await settle(stack)
    final = snapshot(stack)
    assert left == {name: 0.0 for name in stack}, f"streams still open after {sessions} sessions: {left}"
    assert sessions >= 3, f"only {sessions} sessions in {SOAK_S:g} s"
    for name, (threads, rss) in final.items():
        base_threads, base_rss = base[name]
        assert threads <= base_threads + 2, f"{name}: threads {base_threads} -> {threads} over {sessions} sessions"
        assert rss <= base_rss + 8 + 1.0 * sessions, f"{name}: RSS {base_rss:.1f} -> {rss:.1f} MB over {sessions} sessions"
    print(f"soak: {sessions} sessions in {SOAK_S:g} s; threads/RSS MB before {base}, after {final}")
