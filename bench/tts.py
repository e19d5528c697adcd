"""TTS benchmark: time to first audio, real-time factor, concurrent real-time streams.

Starts ``voicemesh serve tts`` (piper/en_US-joe-medium preloaded) in its own
process, unless ``--address`` names a running one, and measures over gRPC:

* time to first audio: from sending the first text piece of a two-sentence
  reply (pieces of 3-8 characters, one every ``--pace-ms`` like an LLM) to
  the first audio chunk, p50/p95 over ``--trials`` replies; also the part of
  it after the piece that completed the first sentence (synthesis latency);
* real-time factor: wall time to receive all audio of a 12-sentence text sent
  at once, divided by that audio's duration (one stream);
* concurrency: N streams at once (N doubling, then bisecting), each playing
  its audio from its first chunk on; a stream keeps real time when no chunk
  arrives after the moment a player would need it. The figure is the largest
  N where every stream kept real time.

With ``--in-process`` each reply is also timed through the same voice and ``SynthesisStream`` loaded in
this process, right after the service's: the service's p50 over that is what the gRPC service adds.

Prints the figures and saves them to bench/results/tts.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.speech import SENTENCES  # noqa: E402
from voicemesh.process import ServiceProcess  # noqa: E402
from voicemesh.v1 import tts_pb2, tts_pb2_grpc  # noqa: E402

VOICE = "piper/en_US-joe-medium"


def _config(rate: int) -> tts_pb2.SynthesizeRequest:
    return tts_pb2.SynthesizeRequest(config=tts_pb2.SynthesisConfig(voice=VOICE, sample_rate_hz=rate))


def _pieces(text: str, seed: int) -> list[str]:
    rng, out, i = random.Random(seed), [], 0
    while i < len(text):
        n = rng.randint(3, 8)
        out.append(text[i : i + n])
        i += n
    return out


async def _first_audio(write, end, audio_events, first: str, second: str, pace_s: float,
                       seed: int) -> tuple[float, float]:
    """Seconds from the first text piece to the first audio of a two-sentence reply, and seconds from the piece
    that completed the first sentence to that audio. ``write``/``end`` send a piece / the end of the text;
    ``audio_events`` yields, for every event, whether it is audio."""
    started = time.perf_counter()
    completed = None

    async def feed() -> None:
        nonlocal completed
        sent = 0
        for piece in _pieces(f"{first} {second}", seed):
            await write(piece)
            sent += len(piece)
            if completed is None and sent > len(first):  # the space after the first sentence is out
                completed = time.perf_counter()
            await asyncio.sleep(pace_s)
        await end()

    feeder = asyncio.create_task(feed())
    try:
        ttfa = None
        async for is_audio in audio_events:
            if ttfa is None and is_audio:
                ttfa = time.perf_counter() - started
        await feeder
    finally:
        feeder.cancel()
    assert ttfa is not None and completed is not None, "no audio"
    return ttfa, started + ttfa - completed


async def first_audio(stub, first: str, second: str, rate: int, pace_s: float, seed: int) -> tuple[float, float]:
    """``_first_audio`` through the TTS service."""
    call = stub.Synthesize()
    await call.write(_config(rate))

    async def events():
        while (response := await call.read()) is not grpc.aio.EOF:
            yield response.WhichOneof("event") == "audio"

    return await _first_audio(lambda piece: call.write(tts_pb2.SynthesizeRequest(text=piece)), call.done_writing,
                              events(), first, second, pace_s, seed)


class InProcessVoice:
    """The service's voice loaded in this process: the same reply through the same ``SynthesisStream`` without
    gRPC, to tell the service's own cost from synthesis (``--in-process``)."""

    async def load(self) -> InProcessVoice:
        from voicemesh.backend import BackendCache
        from voicemesh.descriptors import parse
        from voicemesh.registry import Registry

        self.backend = await BackendCache(Registry("tts")).get(parse(VOICE))
        await self.backend.warm_up()
        self.voice = self.backend.check_voice(parse(VOICE).variant or "")
        return self

    async def first_audio(self, first: str, second: str, rate: int, pace_s: float, seed: int) -> tuple[float, float]:
        from voicemesh.services.tts.backend import VoiceOptions
        from voicemesh.services.tts.stream import Chunk, StreamLimits, SynthesisStream

        texts: asyncio.Queue = asyncio.Queue()

        async def inputs():
            while (piece := await texts.get()) is not None:
                yield piece

        async def end() -> None:
            texts.put_nowait(None)

        async def write(piece: str) -> None:
            texts.put_nowait(piece)

        stream = SynthesisStream(self.backend, VoiceOptions(voice=self.voice, sample_rate_hz=rate), StreamLimits())

        async def events():
            async for event in stream.run(inputs()):
                yield isinstance(event, Chunk)

        return await _first_audio(write, end, events(), first, second, pace_s, seed)


async def whole_stream(stub, text: str, rate: int) -> dict:
    """Send ``text`` at once; time every chunk; report wall time, audio seconds and underrun."""
    requests = [_config(rate), tts_pb2.SynthesizeRequest(text=text)]
    started = time.perf_counter()
    first = None
    late = 0.0  # worst lateness of a chunk against a player started at the first chunk
    audio_s = 0.0
    async for response in stub.Synthesize(iter(requests)):
        if response.WhichOneof("event") != "audio":
            continue
        now = time.perf_counter()
        if first is None:
            first = now
        position = response.audio.offset_samples / rate
        late = max(late, (now - first) - position)
        audio_s += len(response.audio.audio) / 2 / rate
    wall = time.perf_counter() - started
    return {"wall_s": wall, "audio_s": audio_s, "ttfa_s": first - started, "worst_late_s": late}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(address: str, args: argparse.Namespace) -> dict:
    text = " ".join(SENTENCES)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = tts_pb2_grpc.TtsServiceStub(channel)
        await whole_stream(stub, "Warming up the voice.", args.rate)
        local = await InProcessVoice().load() if args.in_process else None
        timings, local_timings = [], []
        for i in range(args.trials):  # the same reply through the service, then (--in-process) in this process
            reply = (SENTENCES[i % len(SENTENCES)], SENTENCES[(i + 1) % len(SENTENCES)], args.rate,
                     args.pace_ms / 1000, i)
            timings.append(await first_audio(stub, *reply))
            if local is not None:
                local_timings.append(await local.first_audio(*reply))
        ttfas = [t[0] for t in timings]
        after_sentence = [t[1] for t in timings]
        single = await whole_stream(stub, text, args.rate)
        levels: list[dict] = []

        async def level(n: int) -> bool:
            results = await asyncio.gather(*(whole_stream(stub, text, args.rate) for _ in range(n)))
            worst = max(r["worst_late_s"] for r in results)
            entry = {
                "streams": n,
                "real_time": worst <= args.late_tolerance_ms / 1000,
                "worst_late_s": round(worst, 3),
                "ttfa_p50_s": round(statistics.median(r["ttfa_s"] for r in results), 3),
                "aggregate_rtf": round(max(r["wall_s"] for r in results) / sum(r["audio_s"] for r in results), 4),
            }
            levels.append(entry)
            print(f"  {n:3d} streams: real time {'yes' if entry['real_time'] else 'NO '}  worst lateness "
                  f"{worst * 1000:7.0f} ms  first audio p50 {entry['ttfa_p50_s'] * 1000:6.0f} ms  "
                  f"aggregate RTF {entry['aggregate_rtf']:.4f}", flush=True)
            return entry["real_time"]

        # Double until a level fails, then bisect between the last good and the first bad one.
        good, bad, n = 0, None, 1
        while n <= args.max_streams:
            if not await level(n):
                bad = n
                break
            good, n = n, n * 2
        while bad is not None and bad - good > 1:
            middle = (good + bad) // 2
            if await level(middle):
                good = middle
            else:
                bad = middle
    sustained = good
    in_process = {}
    if local_timings:
        ttfa, after = [t[0] for t in local_timings], [t[1] for t in local_timings]
        in_process = {"in_process_ttfa_p50_ms": round(statistics.median(ttfa) * 1000, 1),
                      "in_process_after_first_sentence_p50_ms": round(statistics.median(after) * 1000, 1),
                      "service_over_in_process_ttfa_p50": round(statistics.median(ttfas) / statistics.median(ttfa), 3)}
    return {
        **in_process,
        "ttfa_p50_ms": round(statistics.median(ttfas) * 1000, 1),
        "ttfa_p95_ms": round(_pct(ttfas, 0.95) * 1000, 1),
        "ttfa_all_ms": [round(t * 1000, 1) for t in ttfas],
        "after_first_sentence_p50_ms": round(statistics.median(after_sentence) * 1000, 1),
        "after_first_sentence_p95_ms": round(_pct(after_sentence, 0.95) * 1000, 1),
        "rtf": round(single["wall_s"] / single["audio_s"], 4),
        "rtf_audio_s": round(single["audio_s"], 2),
        "concurrency": levels,
        "streams_real_time": sustained,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", help="a running TTS service (default: start one)")
    parser.add_argument("--trials", type=int, default=30, help="replies timed for first audio (default 30)")
    parser.add_argument("--pace-ms", type=float, default=20.0, help="ms between text pieces (default 20)")
    parser.add_argument("--rate", type=int, default=24000, help="output sample rate (default 24000)")
    parser.add_argument("--max-streams", type=int, default=64, help="largest concurrency tried (default 64)")
    parser.add_argument("--late-tolerance-ms", type=float, default=0.0,
                        help="lateness a player may absorb before it counts as an underrun (default 0)")
    parser.add_argument("--in-process", action="store_true",
                        help="also time each reply through the same voice and SynthesisStream loaded in this process "
                        "(no gRPC), right after the service's, and report the service's p50 over it")
    parser.add_argument("--server-args", default="", help="extra flags for voicemesh serve tts, e.g. '--piper-threads 2'")
    args = parser.parse_args()
    print(f"TTS bench: {VOICE}, {args.rate} Hz, pieces of 3-8 characters every {args.pace_ms:g} ms, "
          f"{os.cpu_count()} CPUs", flush=True)
    load_before = os.getloadavg()
    if args.address:
        figures = asyncio.run(run(args.address, args))
    else:
        with ServiceProcess("tts", args=["--metrics-port", "-1", "--preload", VOICE, "--log-level", "WARNING",
                                         *args.server_args.split()]) as server:
            figures = asyncio.run(run(server.address, args))
    print(f"time to first audio from the first text piece: p50 {figures['ttfa_p50_ms']:.0f} ms, "
          f"p95 {figures['ttfa_p95_ms']:.0f} ms ({args.trials} two-sentence replies)")
    print(f"  of which after the first sentence was complete: p50 {figures['after_first_sentence_p50_ms']:.0f} ms, "
          f"p95 {figures['after_first_sentence_p95_ms']:.0f} ms")
    if "in_process_ttfa_p50_ms" in figures:
        print(f"in this process, the same replies: first audio p50 {figures['in_process_ttfa_p50_ms']:.0f} ms (after "
              f"the first sentence {figures['in_process_after_first_sentence_p50_ms']:.0f} ms); service / in "
              f"process {figures['service_over_in_process_ttfa_p50']:.3f}")
    print(f"real-time factor (one stream, {figures['rtf_audio_s']:.1f} s of audio): {figures['rtf']:.4f}")
    print(f"concurrent streams kept in real time on this machine: {figures['streams_real_time']}")
    figures["load_average_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    print(f"1-minute load average before/after (the machine is shared): {figures['load_average_before_after']}")
    figures.update(
        command=" ".join([Path(sys.executable).name, *sys.argv]), cpus=os.cpu_count(), machine=platform.machine(),
        pace_ms=args.pace_ms, rate=args.rate, server_args=args.server_args, at=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                               time.gmtime()),
    )
    out = Path(__file__).resolve().parent / "results" / "tts.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
