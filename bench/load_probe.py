"""The pass-through STT probe of bench/load.py, in its own process.

    .venv/bin/python bench/load_probe.py UPSTREAM PORT   # started by bench/load.py

A gRPC SttService that forwards every Recognize stream to the real STT service at UPSTREAM and stamps
each audio byte as it arrives with ``time.monotonic`` (the clients' clock: system-wide). In its own
process its loop does not wait on the clients' loop for the GIL, which would inflate the figures.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from voicemesh.process import free_port
from voicemesh.v1 import stt_pb2_grpc


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

    async def Recognize(self, request_iterator, context):
        metadata = [(k, v) for k, v in context.invocation_metadata() if k in ("x-session-id", "authorization")]
        arrivals = self.sessions[dict(metadata).get("x-session-id", "")]

        async def forward():
            async for request in request_iterator:
                if request.WhichOneof("request") == "audio":
                    arrivals.total += len(request.audio)
                    arrivals.marks.append((arrivals.total, time.monotonic()))
                yield request

        async with grpc.aio.insecure_channel(self.upstream) as channel:
            async for response in stt_pb2_grpc.SttServiceStub(channel).Recognize(forward(), metadata=metadata):
                yield response

    async def Describe(self, request, context):
        async with grpc.aio.insecure_channel(self.upstream) as channel:
            return await stt_pb2_grpc.SttServiceStub(channel).Describe(request)


async def serve_probe(upstream: str, port: int) -> None:
    """The probe process: serves the probe; each ``dump PATH`` line on stdin writes the arrivals so far to
    PATH as JSON (and forgets them), answering ``DUMPED``; end of stdin stops it."""
    probe = SttProbe(upstream)
    server = grpc.aio.server()
    stt_pb2_grpc.add_SttServiceServicer_to_server(probe, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        command, _, path = line.strip().partition(" ")
        if command == "dump":
            sessions, probe.sessions = probe.sessions, defaultdict(Arrivals)
            Path(path).write_text(json.dumps({k: v.marks for k, v in sessions.items()}))
            print("DUMPED", flush=True)
    await server.stop(1)


class ProbeProcess:
    """The probe in its own process: its loop shares no GIL with the clients, and ``time.monotonic`` is
    the same clock system-wide, so its arrival stamps compare with the clients' send stamps."""

    def __init__(self, upstream: str, logs: Path):
        self.port, self.logs = free_port(), logs
        self.proc = subprocess.Popen(
            [sys.executable, __file__, upstream, str(self.port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(logs / "probe.log", "wb"),  # noqa: SIM115
            cwd=ROOT, text=True)
        assert self.proc.stdout.readline().strip() == "READY", "the probe did not start"

    def arrivals(self) -> dict[str, Arrivals]:
        """What the probe received since the last call, per session id."""
        path = self.logs / "probe-arrivals.json"
        self.proc.stdin.write(f"dump {path}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "DUMPED", "the probe did not answer"
        marks = json.loads(path.read_text())
        return {k: Arrivals(total=v[-1][0] if v else 0, marks=[tuple(m) for m in v]) for k, v in marks.items()}

    def stop(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


if __name__ == "__main__":
    asyncio.run(serve_probe(sys.argv[1], int(sys.argv[2])))
