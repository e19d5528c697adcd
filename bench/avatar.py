"""Avatar benchmark: frame rate on one core, CPU per stream, first-frame latency and A/V offset.

Starts ``voicemesh serve avatar`` in its own process (pinned to one CPU core
with every thread it has) unless ``--address`` names a running one, and
measures ``local/ada`` at ``--size`` over gRPC:

* frame rate: an unpaced stream renders a 30 s reply as fast as it can;
  frames per second of wall time, with the server on one core (per encoding);
* CPU per stream: the server's CPU seconds (from /proc) over the wall seconds
  of a paced 30 s reply, i.e. the share of one core a live stream uses;
* first-frame latency: from sending a reply's first 100 ms of audio to the
  first speech frame, on a paced stream that was idle, p50/p95 over trials;
* A/V offset over a 30 s reply (paced, audio sent as a TTS ahead of real time
  would: 100 ms chunks every ``--chunk-gap-ms``, default 25): a player that
  starts the audio when the first speech frame arrives needs frame k at
  first + k / fps; the offset is how late (positive) or early frames arrive
  against that, p95 and worst; and the mouth's lag behind the audio envelope
  (cross-correlation peak, interpolated).

Prints the figures and saves them to bench/results/avatar.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.avatar.helpers import REPLY_END, Live, chunks, config  # noqa: E402
from tests.speech import SENTENCES, speak  # noqa: E402
from voicemesh.process import ServiceProcess  # noqa: E402

RATE = 16000


def reply_audio(seconds: float) -> bytes:
    pcm = b""
    while len(pcm) < 2 * RATE * seconds:
        pcm += b"".join(speak(s) for s in SENTENCES)
    return pcm[: int(2 * RATE * seconds)]


def pin(pid: int, core: int) -> None:
    """Pin every thread of ``pid`` (and so the threads they start) to one core."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {core})


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def frame_rate(address: str, pcm: bytes, size: int, fps: int, encoding: str) -> float:
    live = Live(address)
    await live.send(config(size=size, fps=fps, encoding=encoding, unpaced=True))
    started = time.monotonic()
    await live.send(*chunks(pcm), REPLY_END)
    received = await live.finish(timeout=300)
    frames = received.frames()
    return len(frames) / (received.events[-1][0] - started)


async def first_frame(address: str, pcm: bytes, size: int, fps: int, trials: int) -> list[float]:
    live = Live(address)
    await live.send(config(size=size, fps=fps))
    await live.wait_for(lambda r: len(r.frames()) >= fps // 2)
    latencies, offset = [], 0
    for trial in range(trials):
        requests = chunks(pcm[: 2 * RATE // 2], offset)  # half a second per reply
        sent = await live.send(requests[0])
        await live.wait_for(lambda r: any(not f.idle and f.audio_offset_samples >= offset for f in r.frames()))
        arrived = next(t for t, r in live.received.events if r.WhichOneof("event") == "frame"
                       and not r.frame.idle and r.frame.audio_offset_samples >= offset)
        latencies.append(arrived - sent)
        await live.send(*requests[1:], REPLY_END)
        await live.wait_for(lambda r: len(r.marks()) == trial + 1)
        offset += RATE // 2
        await asyncio.sleep(0.1 + 0.05 * (trial % 3))  # land at different points of the frame interval
    await live.finish()
    return latencies


async def live_reply(address: str, pcm: bytes, size: int, fps: int, pid: int | None, gap_s: float) -> dict:
    live = Live(address)
    await live.send(config(size=size, fps=fps))
    await live.wait_for(lambda r: len(r.frames()) >= fps // 2)
    cpu_before, wall_before = (cpu_seconds(pid) if pid else 0.0), time.monotonic()
    for request in chunks(pcm):
        await live.send(request)
        await asyncio.sleep(gap_s)
    await live.send(REPLY_END)
    await live.wait_for(lambda r: len(r.marks()) == 1, timeout=120)
    cpu = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - wall_before) if pid else None
    received = await live.finish()
    speech = [(t, r.frame) for t, r in received.events if r.WhichOneof("event") == "frame" and not r.frame.idle]
    first = speech[0][0]
    offsets = np.array([t - (first + k / fps) for k, (t, _) in enumerate(speech)])
    samples = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768
    step = RATE // fps
    loud = np.array([np.sqrt(np.mean(samples[f.audio_offset_samples : f.audio_offset_samples + step] ** 2))
                     for _, f in speech])
    mouth = np.array([f.mouth_open for _, f in speech])
    lags = list(range(-4, 5))
    corr = [float(np.corrcoef(loud[max(0, -k) : len(loud) - max(0, k)], mouth[max(0, k) : len(mouth) - max(0, -k)])[0, 1])
            for k in lags]
    best = int(np.argmax(corr))
    shift = 0.0
    if 0 < best < len(lags) - 1:  # parabola through the peak and its neighbours
        a, b, c = corr[best - 1], corr[best], corr[best + 1]
        shift = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c else 0.0
    return {
        "frames": len(speech),
        "cpu_share_of_one_core": round(cpu, 3) if cpu is not None else None,
        "av_offset_p95_ms": round(float(np.percentile(np.abs(offsets), 95)) * 1000, 1),
        "av_offset_worst_late_ms": round(float(offsets.max()) * 1000, 1),
        "av_offset_worst_early_ms": round(float(-offsets.min()) * 1000, 1),
        "mouth_lag_ms": round((lags[best] + shift) * 1000 / fps, 1),
        "mouth_envelope_correlation": round(corr[best], 3),
    }


async def run(address: str, args: argparse.Namespace, pid: int | None) -> dict:
    pcm = reply_audio(args.seconds)
    rates = {}
    for encoding in args.encodings.split(","):
        rates[encoding] = round(await frame_rate(address, pcm, args.size, args.fps, encoding), 1)
        print(f"  unpaced {encoding}: {rates[encoding]:.1f} fps", flush=True)
    latencies = await first_frame(address, pcm, args.size, args.fps, args.trials)
    reply = await live_reply(address, pcm, args.size, args.fps, pid, args.chunk_gap_ms / 1000)
    return {
        "fps_one_core": rates,
        "first_frame_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "first_frame_p95_ms": round(float(np.percentile(latencies, 95)) * 1000, 1),
        "first_frame_all_ms": [round(t * 1000, 1) for t in latencies],
        **reply,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", help="a running avatar service (default: start one, pinned to --core)")
    parser.add_argument("--core", type=int, default=0, help="CPU core the started server runs on (default 0)")
    parser.add_argument("--size", type=int, default=512, help="frame width and height (default 512)")
    parser.add_argument("--fps", type=int, default=25, help="frames per second (default 25)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the reply (default 30)")
    parser.add_argument("--trials", type=int, default=20, help="replies timed for first frame (default 20)")
    parser.add_argument("--chunk-gap-ms", type=float, default=25.0,
                        help="ms between the 100 ms audio chunks of the 30 s reply (default 25: 4x real time)")
    parser.add_argument("--encodings", default="i420,jpeg,h264", help="encodings timed unpaced (default i420,jpeg,h264)")
    args = parser.parse_args()
    print(f"avatar bench: local/ada {args.size}x{args.size} at {args.fps} fps, {args.seconds:g} s reply, "
          f"{os.cpu_count()} CPUs", flush=True)
    load_before = os.getloadavg()
    if args.address:
        figures = asyncio.run(run(args.address, args, None))
    else:
        with ServiceProcess("avatar", args=["--metrics-port", "-1", "--preload", "local/ada",
                                            "--log-level", "WARNING"]) as server:
            pin(server.proc.pid, args.core)
            figures = asyncio.run(run(server.address, args, server.proc.pid))
    print(f"frame rate, one stream on one core: {figures['fps_one_core']} fps")
    print(f"CPU per live stream: {figures['cpu_share_of_one_core']} of one core")
    print(f"first frame after the first audio: p50 {figures['first_frame_p50_ms']:.0f} ms, "
          f"p95 {figures['first_frame_p95_ms']:.0f} ms ({args.trials} replies)")
    print(f"A/V offset over the {args.seconds:g} s reply: p95 {figures['av_offset_p95_ms']:.0f} ms, worst late "
          f"{figures['av_offset_worst_late_ms']:.0f} ms, worst early {figures['av_offset_worst_early_ms']:.0f} ms; "
          f"mouth lag behind the audio envelope {figures['mouth_lag_ms']:.0f} ms "
          f"(r = {figures['mouth_envelope_correlation']})")
    figures["load_average_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    print(f"1-minute load average before/after (the machine is shared): {figures['load_average_before_after']}")
    figures.update(command=" ".join([Path(sys.executable).name, *sys.argv]), cpus=os.cpu_count(),
                   machine=platform.machine(), at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    out = Path(__file__).resolve().parent / "results" / "avatar.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
