"""Load: N concurrent orchestrator sessions streaming real-time audio; per-chunk overhead, errors, memory.

    .venv/bin/python bench/load.py [--sessions 1,2,4,8,16,32] [--seconds 15] [--out bench/results/load.json]
    .venv/bin/python bench/load.py --sessions 400 --arrivals-per-s 40   # offered past capacity: refusals
    .venv/bin/python bench/load.py --sessions 256 --arrivals-per-s 32 --orchestrator-args "--max-machine-cpu 0.8"

Starts, as separate processes: a loopback OpenAI-compatible transcription server (tests/stt/openai_server.py,
faster-whisper behind the /v1/audio/transcriptions protocol), the STT service using it through its
``openai`` backend (remote style), the LLM and TTS services (local, idle here) and the orchestrator.
Between the orchestrator and the STT service sits a pass-through probe (a gRPC SttService in its own
process, bench/load_probe.py, forwarding every stream to the real STT service): it stamps each
audio byte as it arrives with ``time.monotonic``, the clock the clients use (system-wide). In its own
process its loop does not wait on the clients' loop for the GIL, which would inflate the figure.

Each session sends 20 ms chunks (--chunk-ms) of low noise at real time (no speech, so no turns: this measures the
audio path, not the models). Per-chunk overhead = time the probe received the chunk's last byte minus
the time the client sent it: client -> orchestrator (VAD, writer) -> probe, two loopback gRPC hops.
The probe's own hop is counted too, so the figure is an upper bound of the mesh's overhead.

By default the N sessions of a level open first and then all stream at once. With ``--arrivals-per-s``
they open one after another at that rate, each streaming once open, as real callers arrive: offered
more than capacity, the orchestrator should refuse the excess (RESOURCE_EXHAUSTED, counted as refused,
not as errors) while the admitted sessions stay in real time.

For each N: p50/p99/max overhead of the admitted sessions, refusals, error events and failed RPCs,
client send lateness, orchestrator RSS and threads (``/proc``) before and with the N sessions open,
memory per session, and the CPU time the orchestrator and the STT service used per chunk sent (the cost
of the path itself, which the latency figures mix with whatever else the machine runs). Reports the
largest N whose p99 stays under --budget-ms (5) with zero errors.
``--profile DIR`` records py-spy profiles of the orchestrator and the STT service during each level.
Prints and saves JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from voicemesh.mesh import MeshConfig
from voicemesh.process import ServiceProcess, free_port
from voicemesh.v1 import agent_pb2, agent_pb2_grpc

from bench.load_probe import Arrivals, ProbeProcess

RATE = 16000
CHUNK_MS = 20  # the default; --chunk-ms sets it (most of what a message costs does not depend on its size)
LLM = "llama.cpp/smollm2-135m-instruct"
TTS = "piper/en_US-joe-medium"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    """CPU time (user + system, all threads) the process has used, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


@dataclass
class SessionResult:
    session_id: str = ""
    refused: str = ""  # the RESOURCE_EXHAUSTED message when the orchestrator refused the session
    sent: list[float] = field(default_factory=list)  # monotonic send time of each chunk
    lateness_ms: list[float] = field(default_factory=list)  # how late the client sent each chunk
    errors: list[str] = field(default_factory=list)


class Opening:
    """Counts sessions whose opening is over (admitted or not); ``all_open`` is set once all ``n`` are."""

    def __init__(self, n: int):
        self.left, self.all_open = n, asyncio.Event()

    def over(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.all_open.set()


def noise(seconds: float, seed: int) -> bytes:
    samples = np.random.default_rng(seed).normal(0, 0.003, int(seconds * RATE))
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


async def one_session(address: str, seconds: float, seed: int, opening: Opening | None,
                      open_at: float = 0.0, chunk_ms: int = CHUNK_MS) -> SessionResult:
    """One session; with ``opening`` it streams once every session of the level is open (N at once), else
    it opens at ``open_at`` (monotonic) and streams at once (sessions arriving over time)."""
    result = SessionResult()
    pcm = noise(seconds, seed)
    config = agent_pb2.SessionConfig(
        instructions="Answer briefly.", input_sample_rate_hz=RATE, output_sample_rate_hz=RATE,
        stt=agent_pb2.ModelChoice(candidates=[agent_pb2.ModelSpec(descriptor="openai/whisper-1")]),
        llm=agent_pb2.ModelChoice(candidates=[agent_pb2.ModelSpec(descriptor=LLM)]),
        tts=agent_pb2.ModelChoice(candidates=[agent_pb2.ModelSpec(descriptor=TTS)]))
    if open_at:
        await asyncio.sleep(max(0.0, open_at - time.monotonic()))
    async with grpc.aio.insecure_channel(address) as channel:
        call = agent_pb2_grpc.AgentServiceStub(channel).Session()
        try:
            await call.write(agent_pb2.SessionRequest(config=config))
            first = await call.read()
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
                result.refused = error.details()  # load past capacity: refused, as it should be
            else:
                result.errors.append(f"session not opened {error.code().name}: {error.details()}")
            return result
        finally:
            if opening is not None:
                opening.over()
        if first is grpc.aio.EOF or first.WhichOneof("event") != "started":
            result.errors.append(f"no started event: {first}")
            return result
        result.session_id = first.started.session_id

        async def read() -> None:
            while (response := await call.read()) is not grpc.aio.EOF:
                if response.WhichOneof("event") == "error":
                    result.errors.append(f"{response.error.code}: {response.error.message}")

        reader = asyncio.create_task(read())
        if opening is not None:
            await opening.all_open.wait()  # every session open before any streams: N at once
        start = time.monotonic()
        step = RATE * 2 * chunk_ms // 1000
        for i in range(0, len(pcm), step):
            due = start + (i // step) * chunk_ms / 1000
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.monotonic()
            result.lateness_ms.append(max(0.0, (now - due) * 1000))
            result.sent.append(now)
            await call.write(agent_pb2.SessionRequest(audio=pcm[i:i + step]))
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


def overheads(result: SessionResult, arrivals: Arrivals, chunk_ms: int = CHUNK_MS) -> list[float]:
    """Per chunk: arrival of its last byte at the probe minus its send time (ms)."""
    out, j = [], 0
    marks = arrivals.marks
    for i, sent in enumerate(result.sent):
        need = (i + 1) * RATE * 2 * chunk_ms // 1000
        while j < len(marks) and marks[j][0] < need:
            j += 1
        if j == len(marks):
            break
        out.append((marks[j][1] - sent) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def run_level(address: str, n: int, seconds: float, probe: ProbeProcess, orchestrator_pid: int,
                    arrivals_per_s: float = 0.0, stt_pid: int = 0, chunk_ms: int = CHUNK_MS) -> dict:
    rss_before, threads_before = rss_mb(orchestrator_pid), threads(orchestrator_pid)
    # CPU per chunk is the cost of the path itself; latency also shows what else the shared machine ran.
    cpu_before = {"orchestrator": cpu_s(orchestrator_pid), "stt": cpu_s(stt_pid) if stt_pid else 0.0}
    load_before = os.getloadavg()[0]  # the machine is shared: other work shows in the figures
    peak = {"rss": rss_before, "threads": threads_before}

    async def sample() -> None:
        while True:
            await asyncio.sleep(0.5)
            peak["rss"] = max(peak["rss"], rss_mb(orchestrator_pid))
            peak["threads"] = max(peak["threads"], threads(orchestrator_pid))

    sampler = asyncio.create_task(sample())
    try:
        if arrivals_per_s > 0:  # sessions arrive over time: each streams once it is open
            t0 = time.monotonic() + 0.1
            sessions = [one_session(address, seconds, 1000 * n + k, None, t0 + k / arrivals_per_s, chunk_ms)
                        for k in range(n)]
        else:
            opening = Opening(n)
            sessions = [one_session(address, seconds, 1000 * n + k, opening, chunk_ms=chunk_ms) for k in range(n)]
        results = await asyncio.gather(*sessions, return_exceptions=True)
    finally:
        sampler.cancel()
    cpu = {"orchestrator": cpu_s(orchestrator_pid) - cpu_before["orchestrator"],
           "stt": cpu_s(stt_pid) - cpu_before["stt"] if stt_pid else float("nan")}
    arrived = probe.arrivals()
    all_overheads, lateness, errors, refused, missing = [], [], [], [], 0
    for res in results:
        if isinstance(res, BaseException):
            errors.append(f"{type(res).__name__}: {res}")
            continue
        errors.extend(res.errors)
        if res.refused:
            refused.append(res.refused)
            continue
        found = overheads(res, arrived.get(res.session_id, Arrivals()), chunk_ms)
        missing += len(res.sent) - len(found)
        all_overheads.extend(found)
        lateness.extend(res.lateness_ms)
    admitted = n - len(refused)
    return {
        "sessions": n, "arrivals_per_s": arrivals_per_s, "admitted": admitted, "refused": len(refused),
        "refusal_example": refused[0] if refused else "",
        "seconds": seconds, "loadavg_1m_before": load_before, "chunks": len(all_overheads),
        "chunks_not_arrived": missing,
        "overhead_p50_ms": pct(all_overheads, 50), "overhead_p99_ms": pct(all_overheads, 99),
        "overhead_max_ms": max(all_overheads, default=float("nan")),
        "client_send_lateness_p99_ms": pct(lateness, 99), "errors": errors,
        "orchestrator_rss_before_mb": rss_before, "orchestrator_rss_peak_mb": peak["rss"],
        "memory_per_session_mb": (peak["rss"] - rss_before) / max(admitted, 1),
        "orchestrator_threads_before": threads_before, "orchestrator_threads_peak": peak["threads"],
        "orchestrator_cpu_s": cpu["orchestrator"], "stt_cpu_s": cpu["stt"],
        "orchestrator_cpu_us_per_chunk": cpu["orchestrator"] * 1e6 / max(sum(len(r.sent) for r in results
                                                                             if isinstance(r, SessionResult)), 1),
        "stt_cpu_us_per_chunk": cpu["stt"] * 1e6 / max(sum(len(r.sent) for r in results
                                                           if isinstance(r, SessionResult)), 1),
    }


class Stack:
    """The processes of the load test, started and stopped together."""

    def __init__(self, logs: Path, orchestrator_args: list[str]):
        self.logs, self.orchestrator_args = logs, orchestrator_args
        self.transcriber_port = free_port()
        self.procs: list[ServiceProcess] = []
        self.server: subprocess.Popen | None = None
        self.probe: ProbeProcess | None = None

    def start(self) -> Stack:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.server = subprocess.Popen(
            [sys.executable, str(ROOT / "tests/stt/openai_server.py"), "--port", str(self.transcriber_port)],
            stdout=subprocess.PIPE, stderr=open(self.logs / "transcriber.log", "wb"), cwd=ROOT)  # noqa: SIM115
        assert self.server.stdout.readline().strip() == b"READY", "transcription server did not start"
        env = {"VOICEMESH_OPENAI_BASE_URL": f"http://127.0.0.1:{self.transcriber_port}/v1",
               "OPENAI_API_KEY": "load", "VOICEMESH_OPENAI_API_KEY": "load"}
        self.stt = self._start("stt", ["--preload", "", "--workers", "1", "--threads", "1"], env)
        llm = self._start("llm", ["--preload", LLM, "--llama-threads", "1"], env)
        tts = self._start("tts", ["--preload", TTS, "--piper-workers", "1"], env)
        for proc in self.procs:
            proc.wait_serving()
        self.probe = ProbeProcess(self.stt.address, self.logs)
        mesh = self.logs / "mesh.json"
        MeshConfig({"stt": {"*": [f"127.0.0.1:{self.probe.port}"]}, "llm": {"*": [llm.address]},
                    "tts": {"*": [tts.address]}}).write(mesh)
        self.orchestrator = self._start("orchestrator", ["--mesh", str(mesh), "--max-tokens", "30",
                                                         *self.orchestrator_args], env)
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
        if self.probe is not None:
            self.probe.stop()
        if self.server is not None:
            self.server.terminate()
            self.server.wait(10)


def profiled(stack: Stack, folder: str, n: int, seconds: float) -> list[subprocess.Popen]:
    """py-spy (the dev extra) sampling the orchestrator and the STT service while a level runs."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    return [subprocess.Popen([str(spy), "record", "--pid", str(proc.proc.pid), "--duration", str(int(seconds)),
                              "--rate", "200", "--nonblocking", "--format", "speedscope", "--output",
                              f"{folder}/{proc.service}-{n}.json"], stdout=subprocess.DEVNULL,
                             stderr=open(f"{folder}/{proc.service}-{n}.log", "wb"))  # noqa: SIM115
            for proc in (stack.orchestrator, stack.stt)]


def run(levels: list[int], seconds: float, budget_ms: float, logs: Path, *, arrivals_per_s: float = 0.0,
        orchestrator_args: list[str] = (), profile: str = "", chunk_ms: int = CHUNK_MS) -> dict:
    stack = Stack(logs, list(orchestrator_args)).start()
    pid = stack.orchestrator.proc.pid
    try:
        # Warm-up, not reported: the first session loads the orchestrator's VAD and opens the channels.
        asyncio.run(run_level(stack.orchestrator.address, 1, 3.0, stack.probe, pid))
        rows = []
        for n in levels:
            spies = profiled(stack, profile, n, seconds) if profile else []
            row = asyncio.run(run_level(stack.orchestrator.address, n, seconds, stack.probe, pid, arrivals_per_s,
                                        stack.stt.proc.pid, chunk_ms))
            for spy in spies:
                spy.wait(60)
            row["within_budget"] = bool(row["overhead_p99_ms"] < budget_ms and not row["errors"]
                                        and row["chunks_not_arrived"] == 0)
            rows.append(row)
            offered = f"  admitted {row['admitted']} refused {row['refused']}" if row["refused"] else ""
            print(f"N={n:3d}{offered}  overhead p50 {row['overhead_p50_ms']:6.2f} ms  "
                  f"p99 {row['overhead_p99_ms']:6.2f} ms  "
                  f"max {row['overhead_max_ms']:7.2f} ms  errors {len(row['errors'])}  "
                  f"not arrived {row['chunks_not_arrived']}  send lateness p99 {row['client_send_lateness_p99_ms']:.2f} ms  "
                  f"load {row['loadavg_1m_before']:.1f}  RSS {row['orchestrator_rss_before_mb']:.0f}->{row['orchestrator_rss_peak_mb']:.0f} MB "
                  f"({row['memory_per_session_mb']:.2f} MB/session)  threads {row['orchestrator_threads_peak']}  "
                  f"CPU per chunk: orchestrator {row['orchestrator_cpu_us_per_chunk']:.0f} us, "
                  f"STT {row['stt_cpu_us_per_chunk']:.0f} us",
                  flush=True)
            if row["refused"]:
                print(f"    refused: {row['refusal_example']}")
            for error in row["errors"][:5]:
                print(f"    error: {error}")
        held = [r["admitted"] for r in rows if r["within_budget"]]
        return {"levels": rows, "budget_ms": budget_ms, "max_sessions_within_budget": max(held, default=0)}
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", default="1,2,4,8,16,32", help="comma-separated session counts to try")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds of audio each session streams")
    parser.add_argument("--budget-ms", type=float, default=5.0, help="per-chunk overhead p99 to stay under")
    parser.add_argument("--arrivals-per-s", type=float, default=0.0,
                        help="open the sessions of a level at this rate, each streaming once open (0: open all, "
                             "then all stream at once); with more sessions than capacity, the excess is refused")
    parser.add_argument("--orchestrator-args", default="", help="extra flags for the orchestrator, space-separated "
                        "(e.g. '--max-loop-lag-ms 20')")
    parser.add_argument("--chunk-ms", type=int, default=CHUNK_MS, help="audio per client message (10-100 ms)")
    parser.add_argument("--profile", default="", help="folder for py-spy profiles (speedscope JSON) of the "
                        "orchestrator and the STT service during each level (py-spy is in the dev extra)")
    parser.add_argument("--out", default=str(ROOT / "bench/results/load.json"))
    parser.add_argument("--logs", default=str(ROOT / "bench/results/load-logs"))
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.sessions.split(",") if x.strip()]
    summary = run(levels, args.seconds, args.budget_ms, Path(args.logs), arrivals_per_s=args.arrivals_per_s,
                  orchestrator_args=args.orchestrator_args.split(), profile=args.profile, chunk_ms=args.chunk_ms)
    summary.update(command=" ".join([Path(sys.executable).name, *sys.argv]), cpus=os.cpu_count(),
                   machine=platform.platform(), chunk_ms=args.chunk_ms)
    print(f"largest N with per-chunk overhead p99 < {args.budget_ms:g} ms and zero errors: "
          f"{summary['max_sessions_within_budget']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=lambda o: asdict(o)) + "\n")
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
