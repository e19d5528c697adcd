"""Speed of the stt service (local faster-whisper tiny.en) over gRPC.

    .venv/bin/python bench/stt.py [--workers 2] [--threads 1] [--max-streams 16]

Starts ``voicemesh serve stt`` as a child process and measures, with
piper-synthesized sentences (tests/speech.py):

1. real-time factor: one stream of 12 sentences sent as fast as possible,
   wall time / audio seconds (VAD, resampling and every final decode), and
   the same in server CPU seconds (from /proc, which other load on a shared
   machine inflates far less than wall time);
2. latency from the end of speech (energy-based, in the audio sent) to the
   FINAL, p50/p95, one stream in real time (20 ms chunks), also net of the
   endpointing silence; and the server CPU one real-time stream uses, finals
   only and with interims (cores / that = streams the cores carry when
   nothing else runs);
3. interim cadence: wall-clock gap between consecutive INTERIMs of one
   utterance, and the audio each one covers, in real time;
4. concurrent real-time streams: N streams in real time, finals only and
   with interims; the largest N whose FINAL latency p95, net of the
   endpointing silence, stays under ``--budget-ms`` and whose finals are all
   correct.

Prints the figures and saves them as JSON in bench/results/stt.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.speech import SENTENCES, silence, speak, wer  # noqa: E402
from tests.stt.helpers import speech_bounds  # noqa: E402
from voicemesh.audio import chunks  # noqa: E402
from voicemesh.process import ServiceProcess  # noqa: E402
from voicemesh.v1 import stt_pb2, stt_pb2_grpc  # noqa: E402

RATE = 16000
CHUNK_MS = 20
MODEL = "faster-whisper/tiny.en:en"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ms(seconds: float) -> int | None:
    """Seconds as whole milliseconds (None when there was nothing to measure)."""
    return None if seconds != seconds else round(seconds * 1000)


def build(texts: list[str], gap_s: float = 1.2) -> tuple[bytes, list[float], list[str]]:
    """Audio of ``texts`` with gaps, and the true end of each utterance (s)."""
    audio, ends = silence(0.5), []
    for text in texts:
        pcm = speak(text)
        ends.append(float(len(audio) / 2 / RATE + speech_bounds(pcm, RATE)[1]))
        audio += pcm + silence(gap_s)
    return audio, ends, texts


async def run_stream(stub, audio: bytes, *, realtime: bool, interim: bool, min_silence_ms: int = 500) -> dict:
    """One stream; returns the send time of each audio position and the arrival of each event."""
    t0 = time.monotonic()
    sent_audio = [0.0]

    async def gen():
        yield stt_pb2.RecognizeRequest(config=stt_pb2.RecognitionConfig(
            model=MODEL, sample_rate_hz=RATE, interim_results=interim,
            endpointing=stt_pb2.Endpointing(min_silence_ms=min_silence_ms)))
        for chunk in chunks(audio, rate=RATE, ms=CHUNK_MS):
            if realtime:  # pace on the clock, not on sleeps, so the stream never falls behind
                ahead = t0 + sent_audio[0] - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            yield stt_pb2.RecognizeRequest(audio=chunk)
            sent_audio[0] += len(chunk) / 2 / RATE

    arrivals = []
    async for response in stub.Recognize(gen(), timeout=600):
        arrivals.append((time.monotonic() - t0, response))
    return {"t0": t0, "arrivals": arrivals, "wall_s": time.monotonic() - t0}


def final_latencies(result: dict, ends: list[float]) -> tuple[list[float], list[str]]:
    """Seconds from each true end of speech (as sent in real time) to its FINAL."""
    latencies, texts = [], []
    for at, response in result["arrivals"]:
        if response.WhichOneof("event") == "final":
            end = min(ends, key=lambda e: abs(e * 1000 - response.final.end_ms))
            latencies.append(at - end)
            texts.append(response.final.text)
    return latencies, texts


async def bench(address: str, pid: int, args: argparse.Namespace) -> dict:
    channel = grpc.aio.insecure_channel(address)
    stub = stt_pb2_grpc.SttServiceStub(channel)
    report: dict = {}

    audio, ends, texts = build(SENTENCES)
    audio_s = len(audio) / 2 / RATE
    cores = os.cpu_count() or 1
    cpu0 = cpu_seconds(pid)
    fast = await run_stream(stub, audio, realtime=False, interim=False)
    fast_cpu = cpu_seconds(pid) - cpu0
    hyp = " ".join(r.final.text for _, r in fast["arrivals"] if r.WhichOneof("event") == "final")
    report["rtf"] = {"audio_s": round(audio_s, 2), "wall_s": round(fast["wall_s"], 3),
                     "rtf": round(fast["wall_s"] / audio_s, 4), "cpu_rtf": round(fast_cpu / audio_s, 4),
                     "wer": round(wer([(" ".join(texts), hyp)]), 4)}
    print(f"real-time factor (one stream, as fast as possible): {report['rtf']['rtf']:.3f} wall "
          f"({fast['wall_s']:.2f} s for {audio_s:.1f} s of audio), {report['rtf']['cpu_rtf']:.3f} in server CPU "
          f"seconds per audio second; WER {report['rtf']['wer']:.1%}")

    cpu0 = cpu_seconds(pid)
    live = await run_stream(stub, audio, realtime=True, interim=False, min_silence_ms=args.min_silence_ms)
    live_cpu = (cpu_seconds(pid) - cpu0) / audio_s
    latencies, _ = final_latencies(live, ends)
    net = [x - args.min_silence_ms / 1000 for x in latencies]
    report["final_latency"] = {
        "min_silence_ms": args.min_silence_ms, "n": len(latencies),
        "p50_ms": ms(pct(latencies, 0.5)), "p95_ms": ms(pct(latencies, 0.95)),
        "net_p50_ms": ms(pct(net, 0.5)), "net_p95_ms": ms(pct(net, 0.95))}
    fl = report["final_latency"]
    print(f"end of speech -> FINAL (real time, {fl['n']} utterances, min silence {args.min_silence_ms} ms): "
          f"p50 {fl['p50_ms']} ms, p95 {fl['p95_ms']} ms; net of the silence p50 {fl['net_p50_ms']} ms, "
          f"p95 {fl['net_p95_ms']} ms")

    cpu0 = cpu_seconds(pid)
    interim_run = await run_stream(stub, audio, realtime=True, interim=True, min_silence_ms=args.min_silence_ms)
    interim_cpu = (cpu_seconds(pid) - cpu0) / audio_s
    gaps, covered, last = [], [], {}
    for at, response in interim_run["arrivals"]:
        if response.WhichOneof("event") == "interim":
            uid = response.interim.utterance_id
            if uid in last:
                gaps.append(at - last[uid][0])
                covered.append((response.interim.end_ms - last[uid][1]) / 1000)
            last[uid] = (at, response.interim.end_ms)
    interims = sum(1 for _, r in interim_run["arrivals"] if r.WhichOneof("event") == "interim")
    report["interim_cadence"] = {
        "setting_ms": args.interim_interval_ms, "interims": interims, "utterances": len(SENTENCES),
        "gap_p50_ms": ms(pct(gaps, 0.5)), "gap_p95_ms": ms(pct(gaps, 0.95)),
        "audio_between_p50_ms": ms(pct(covered, 0.5))}
    ic = report["interim_cadence"]
    print(f"interim cadence (setting {ic['setting_ms']} ms): {ic['interims']} interims over {ic['utterances']} "
          f"utterances; gap p50 {ic['gap_p50_ms']} ms, p95 {ic['gap_p95_ms']} ms")

    report["cpu_capacity"] = {
        "cpu_s_per_stream_s_finals_only": round(live_cpu, 4), "cpu_s_per_stream_s_with_interims": round(interim_cpu, 4),
        "streams_finals_only": round(cores / live_cpu, 1), "streams_with_interims": round(cores / interim_cpu, 1)}
    cc = report["cpu_capacity"]
    print(f"server CPU per real-time stream (speech with 1.2 s pauses): finals only {live_cpu:.3f} core, with "
          f"interims {interim_cpu:.3f} core -> {cores} fully available cores carry about {cc['streams_finals_only']} "
          f"/ {cc['streams_with_interims']} streams")
    short_audio, short_ends, short_texts = build(SENTENCES[:3], gap_s=1.0)
    for interim, key in ((False, "finals_only"), (True, "with_interims")):
        rows, sustained = [], 0
        for n in [k for k in (1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 24) if k <= args.max_streams]:
            results = await asyncio.gather(*(run_stream(stub, short_audio, realtime=True, interim=interim,
                                                        min_silence_ms=args.min_silence_ms) for _ in range(n)))
            lat, errors = [], 0
            for result in results:
                got, hyp_texts = final_latencies(result, short_ends)
                lat += got
                errors += wer([(" ".join(short_texts), " ".join(hyp_texts))]) > 0.15
            net = [x - args.min_silence_ms / 1000 for x in lat]
            ok = bool(not errors and len(lat) >= 3 * n and pct(net, 0.95) * 1000 <= args.budget_ms)
            rows.append({"streams": n, "final_net_p50_ms": ms(pct(net, 0.5)), "final_net_p95_ms": ms(pct(net, 0.95)),
                         "bad_streams": errors, "ok": ok})
            print(f"  {n:2d} real-time streams, {key.replace('_', ' ')}: FINAL after the endpoint p50 "
                  f"{rows[-1]['final_net_p50_ms']} ms, p95 {rows[-1]['final_net_p95_ms']} ms, wrong transcripts "
                  f"{errors} -> {'ok' if ok else 'over budget'}")
            if not ok:
                break
            sustained = n
        report[f"concurrency_{key}"] = {"rows": rows, "sustained_streams": sustained}
        print(f"real-time streams sustained on {os.cpu_count()} cores, {key.replace('_', ' ')} (FINAL p95 within "
              f"{args.budget_ms} ms after the endpoint, all transcripts right): {sustained}")
    await channel.close()
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--interim-interval-ms", type=int, default=500)
    parser.add_argument("--min-silence-ms", type=int, default=500)
    parser.add_argument("--budget-ms", type=int, default=1000, help="FINAL p95 after the endpoint that counts as keeping up")
    parser.add_argument("--max-streams", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "stt.json")
    args = parser.parse_args()
    server = ServiceProcess("stt", args=["--metrics-port", "-1", "--workers", str(args.workers), "--threads",
                                         str(args.threads), "--queue", "64", "--interim-interval-ms",
                                         str(args.interim_interval_ms)], log_path="/tmp/voicemesh-bench-stt.log")
    with server:
        report = asyncio.run(bench(server.address, server.proc.pid, args))
    report["settings"] = vars(args) | {"out": str(args.out)}
    report["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                         "load_avg_at_end": os.getloadavg()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
