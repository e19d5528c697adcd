"""Load: N concurrent orchestrator sessions streaming real-time audio; per-chunk overhead, errors, memory.

    .venv/bin/python bench/load.py [--sessions 1,2,4,8,16,32] [--seconds 15] [--out bench/results/load.json]

Starts, as separate processes: a loopback OpenAI-compatible transcription server (tests/stt/openai_server.py,
faster-whisper behind the /v1/audio/transcriptions protocol), the STT service using it through its
``openai`` backend (remote style), the LLM and TTS services (local, idle here) and the orchestrator.
Between the orchestrator and the STT service sits a pass-through probe (a gRPC SttService in this
process, on its own thread and event loop, forwarding every stream to the real STT service): it
stamps each audio byte as it arrives, on the same clock as the clients.

Each session sends 20 ms chunks of low noise at real time (no speech, so no turns: this measures the
audio path, not the models). Per-chunk overhead = time the probe received the chunk's last byte minus
the time the client sent it: client -> orchestrator (VAD, writer) -> probe, two loopback gRPC hops.
The probe's own hop is counted too, so the figure is an upper bound of the mesh's overhead.

For each N: p50/p99/max overhead, error events and failed RPCs, client send lateness, orchestrator
RSS and threads (``/proc``) before and with the N sessions open, and memory per session. Reports the
largest N whose p99 stays under --budget-ms (5) with zero errors. Prints and saves JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from voicemesh.mesh import MeshConfig
from voicemesh.process import ServiceProcess, free_port
from voicemesh.v1 import agent_pb2, agent_pb2_grpc, stt_pb2_grpc

RATE = 16000
CHUNK_MS = 20
CHUNK_BYTES = RATE * 2 * CHUNK_MS // 1000
LLM = "llama.cpp/smollm2-135m-instruct"
TTS = "piper/en_US-joe-medium"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


@dataclass
class Arrivals:
    """Audio bytes a probe stream received, as (cumulative bytes, monotonic time) marks."""

    total: int = 0
    marks: list[tuple[int, float]] = field(default_factory=list)


class SttProbe(stt_pb2_grpc.SttServiceServicer):
    """Forwards Recognize streams to the real STT service, stamping audio arrivals per session."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.sessions: dict[str, Arrivals] = defaultdict(Arrivals)
        self.lock = threading.Lock()

    async def Recognize(self, request_iterator, context):
        metadata = [(k, v) for k, v in context.invocation_metadata() if k in ("x-session-id", "authorization")]
        with self.lock:
            arrivals = self.sessions[dict(metadata).get("x-session-id", "")]

        async def forward():
            async for request in request_iterator:
                if request.WhichOneof("request") == "audio":
                    now = time.monotonic()
                    with self.lock:
                        arrivals.total += len(request.audio)
                        arrivals.marks.append((arrivals.total, now))
                yield request

        async with grpc.aio.insecure_channel(self.upstream) as channel:
            async for response in stt_pb2_grpc.SttServiceStub(channel).Recognize(forward(), metadata=metadata):
                yield response

    async def Describe(self, request, context):
        async with grpc.aio.insecure_channel(self.upstream) as channel:
            return await stt_pb2_grpc.SttServiceStub(channel).Describe(request)


class ProbeThread(threading.Thread):
    """The probe's gRPC server on its own event loop."""

    def __init__(self, probe: SttProbe):
        super().__init__(daemon=True)
        self.probe, self.port, self.ready = probe, free_port(), threading.Event()
        self._halt = None

    def run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        server = grpc.aio.server()
        stt_pb2_grpc.add_SttServiceServicer_to_server(self.probe, server)
        server.add_insecure_port(f"127.0.0.1:{self.port}")
        await server.start()
        self._halt = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self.ready.set()
        await self._halt.wait()
        await server.stop(1)

    def stop(self) -> None:
        if self._halt is not None:
            self._loop.call_soon_threadsafe(self._halt.set)
        self.join(10)


@dataclass
class SessionResult:
    session_id: str = ""
    sent: list[float] = field(default_factory=list)  # monotonic send time of each chunk
    lateness_ms: list[float] = field(default_factory=list)  # how late the client sent each chunk
    errors: list[str] = field(default_factory=list)


def noise(seconds: float, seed: int) -> bytes:
    samples = np.random.default_rng(seed).normal(0, 0.003, int(seconds * RATE))
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


async def one_session(address: str, seconds: float, seed: int, opened: asyncio.Barrier) -> SessionResult:
    result = SessionResult()
    pcm = noise(seconds, seed)
    config = agent_pb2.SessionConfig(
        instructions="Answer briefly.", input_sample_rate_hz=RATE, output_sample_rate_hz=RATE,
        stt=agent_pb2.ModelChoice(candidates=[agent_pb2.ModelSpec(descriptor="openai/whisper-1")]),
        llm=agent_pb2.ModelChoice(candidates=[agent_pb2.ModelSpec(descriptor=LLM)]),
        tts=agent_pb2.ModelChoice(candidates=[agent_pb2.ModelSpec(descriptor=TTS)]))
    async with grpc.aio.insecure_channel(address) as channel:
        call = agent_pb2_grpc.AgentServiceStub(channel).Session()
        await call.write(agent_pb2.SessionRequest(config=config))
        first = await call.read()
        if first is grpc.aio.EOF or first.WhichOneof("event") != "started":
            result.errors.append(f"no started event: {first}")
            return result
        result.session_id = first.started.session_id

        async def read() -> None:
            while (response := await call.read()) is not grpc.aio.EOF:
                if response.WhichOneof("event") == "error":
                    result.errors.append(f"{response.error.code}: {response.error.message}")

        reader = asyncio.create_task(read())
        await opened.wait()  # every session open before any streams: N at once
        start = time.monotonic()
        for i in range(0, len(pcm), CHUNK_BYTES):
            due = start + (i // CHUNK_BYTES) * CHUNK_MS / 1000
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.monotonic()
            result.lateness_ms.append(max(0.0, (now - due) * 1000))
            result.sent.append(now)
            await call.write(agent_pb2.SessionRequest(audio=pcm[i:i + CHUNK_BYTES]))
        await asyncio.sleep(0.5)  # let the last chunks arrive
        await call.done_writing()
        try:
            await asyncio.wait_for(reader, 30)
        except grpc.aio.AioRpcError as error:
            if error.code() is not grpc.StatusCode.CANCELLED:
                result.errors.append(f"session ended {error.code().name}: {error.details()}")
        except TimeoutError:
            result.errors.append("session did not end 30 s after the half-close")
            call.cancel()
    return result


def overheads(result: SessionResult, arrivals: Arrivals) -> list[float]:
    """Per chunk: arrival of its last byte at the probe minus its send time (ms)."""
    out, j = [], 0
    marks = arrivals.marks
    for i, sent in enumerate(result.sent):
        need = (i + 1) * CHUNK_BYTES
        while j < len(marks) and marks[j][0] < need:
            j += 1
        if j == len(marks):
            break
        out.append((marks[j][1] - sent) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def run_level(address: str, n: int, seconds: float, probe: SttProbe, orchestrator_pid: int) -> dict:
    rss_before, threads_before = rss_mb(orchestrator_pid), threads(orchestrator_pid)
    load_before = os.getloadavg()[0]  # the machine is shared: other work shows in the figures
    opened = asyncio.Barrier(n)
    peak = {"rss": rss_before, "threads": threads_before}

    async def sample() -> None:
        while True:
            await asyncio.sleep(0.5)
            peak["rss"] = max(peak["rss"], rss_mb(orchestrator_pid))
            peak["threads"] = max(peak["threads"], threads(orchestrator_pid))

    sampler = asyncio.create_task(sample())
    try:
        results = await asyncio.gather(*(one_session(address, seconds, 1000 * n + k, opened) for k in range(n)),
                                       return_exceptions=True)
    finally:
        sampler.cancel()
    all_overheads, lateness, errors, missing = [], [], [], 0
    for res in results:
        if isinstance(res, BaseException):
            errors.append(f"{type(res).__name__}: {res}")
            continue
        errors.extend(res.errors)
        with probe.lock:
            arrivals = probe.sessions.get(res.session_id, Arrivals())
        found = overheads(res, arrivals)
        missing += len(res.sent) - len(found)
        all_overheads.extend(found)
        lateness.extend(res.lateness_ms)
    return {
        "sessions": n, "seconds": seconds, "loadavg_1m_before": load_before, "chunks": len(all_overheads), "chunks_not_arrived": missing,
        "overhead_p50_ms": pct(all_overheads, 50), "overhead_p99_ms": pct(all_overheads, 99),
        "overhead_max_ms": max(all_overheads, default=float("nan")),
        "client_send_lateness_p99_ms": pct(lateness, 99), "errors": errors,
        "orchestrator_rss_before_mb": rss_before, "orchestrator_rss_peak_mb": peak["rss"],
        "memory_per_session_mb": (peak["rss"] - rss_before) / n,
        "orchestrator_threads_before": threads_before, "orchestrator_threads_peak": peak["threads"],
    }


class Stack:
    """The processes of the load test, started and stopped together."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.transcriber_port = free_port()
        self.procs: list[ServiceProcess] = []
        self.server: subprocess.Popen | None = None
        self.probe_thread: ProbeThread | None = None

    def start(self) -> Stack:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.server = subprocess.Popen(
            [sys.executable, str(ROOT / "tests/stt/openai_server.py"), "--port", str(self.transcriber_port)],
            stdout=subprocess.PIPE, stderr=open(self.logs / "transcriber.log", "wb"), cwd=ROOT)  # noqa: SIM115
        assert self.server.stdout.readline().strip() == b"READY", "transcription server did not start"
        env = {"VOICEMESH_OPENAI_BASE_URL": f"http://127.0.0.1:{self.transcriber_port}/v1",
               "OPENAI_API_KEY": "load", "VOICEMESH_OPENAI_API_KEY": "load"}
        stt = self._start("stt", ["--preload", "", "--workers", "1", "--threads", "1"], env)
        llm = self._start("llm", ["--preload", LLM, "--llama-threads", "1"], env)
        tts = self._start("tts", ["--preload", TTS, "--piper-workers", "1"], env)
        for proc in self.procs:
            proc.wait_serving()
        self.probe = SttProbe(stt.address)
        self.probe_thread = ProbeThread(self.probe)
        self.probe_thread.start()
        self.probe_thread.ready.wait(10)
        mesh = self.logs / "mesh.json"
        MeshConfig({"stt": {"*": [f"127.0.0.1:{self.probe_thread.port}"]}, "llm": {"*": [llm.address]},
                    "tts": {"*": [tts.address]}}).write(mesh)
        self.orchestrator = self._start("orchestrator", ["--mesh", str(mesh), "--max-tokens", "30"], env)
        self.orchestrator.wait_serving()
        return self

    def _start(self, service: str, args: list[str], env: dict[str, str]) -> ServiceProcess:
        proc = ServiceProcess(service, args=["--metrics-port", "-1", *args], env=env,
                              log_path=self.logs / f"{service}.log").start()
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        if self.probe_thread is not None:
            self.probe_thread.stop()
        if self.server is not None:
            self.server.terminate()
            self.server.wait(10)


def run(levels: list[int], seconds: float, budget_ms: float, logs: Path) -> dict:
    stack = Stack(logs).start()
    try:
        # Warm-up, not reported: the first session loads the orchestrator's VAD and opens the channels.
        asyncio.run(run_level(stack.orchestrator.address, 1, 3.0, stack.probe, stack.orchestrator.proc.pid))
        rows = []
        for n in levels:
            row = asyncio.run(run_level(stack.orchestrator.address, n, seconds, stack.probe, stack.orchestrator.proc.pid))
            row["within_budget"] = bool(row["overhead_p99_ms"] < budget_ms and not row["errors"]
                                        and row["chunks_not_arrived"] == 0)
            rows.append(row)
            print(f"N={n:3d}  overhead p50 {row['overhead_p50_ms']:6.2f} ms  p99 {row['overhead_p99_ms']:6.2f} ms  "
                  f"max {row['overhead_max_ms']:7.2f} ms  errors {len(row['errors'])}  "
                  f"not arrived {row['chunks_not_arrived']}  send lateness p99 {row['client_send_lateness_p99_ms']:.2f} ms  "
                  f"load {row['loadavg_1m_before']:.1f}  RSS {row['orchestrator_rss_before_mb']:.0f}->{row['orchestrator_rss_peak_mb']:.0f} MB "
                  f"({row['memory_per_session_mb']:.2f} MB/session)  threads {row['orchestrator_threads_peak']}",
                  flush=True)
            for error in row["errors"][:5]:
                print(f"    error: {error}")
        held = [r["sessions"] for r in rows if r["within_budget"]]
        return {"levels": rows, "budget_ms": budget_ms, "max_sessions_within_budget": max(held, default=0)}
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", default="1,2,4,8,16,32", help="comma-separated session counts to try")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds of audio each session streams")
    parser.add_argument("--budget-ms", type=float, default=5.0, help="per-chunk overhead p99 to stay under")
    parser.add_argument("--out", default=str(ROOT / "bench/results/load.json"))
    parser.add_argument("--logs", default=str(ROOT / "bench/results/load-logs"))
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.sessions.split(",") if x.strip()]
    summary = run(levels, args.seconds, args.budget_ms, Path(args.logs))
    summary.update(command=" ".join([Path(sys.executable).name, *sys.argv]), cpus=os.cpu_count(),
                   machine=platform.platform(), chunk_ms=CHUNK_MS)
    print(f"largest N with per-chunk overhead p99 < {args.budget_ms:g} ms and zero errors: "
          f"{summary['max_sessions_within_budget']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=lambda o: asdict(o)) + "\n")
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
