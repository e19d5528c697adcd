"""Voice-to-voice latency of the realtime cascade next to the pipeline through the orchestrator.

    .venv/bin/python bench/realtime.py [--turns 12] [--turns-per-session 4]

Phase 1 (realtime): starts ``voicemesh serve realtime`` (voicemesh/cascade:
faster-whisper, llama.cpp and piper in one process) and talks to it over
RealtimeService.Converse with server VAD: each turn is a piper-synthesized
question streamed in real time in 20 ms chunks, then silence until the
response is done. Voice to voice is measured on the client: from the end of
speech in the audio sent to the first audio delta received.

Phase 2 (pipeline): the orchestrator over separate stt, llm and tts
processes, driven the same way (the mesh phase of bench/conversation.py).

Phase 3 (orchestrator-realtime): the same orchestrator sessions configured
with realtime="voicemesh/cascade" (``voicemesh up --realtime``): what the
orchestrator adds in front of the realtime service.

Prints p50/p95 of the phases in one table and saves JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))

import conversation as pipeline  # noqa: E402  (bench/conversation.py: the orchestrator phase and the report)

from voicemesh.audio import chunks  # noqa: E402
from voicemesh.process import ServiceProcess  # noqa: E402
from voicemesh.samples import synthesize  # noqa: E402
from voicemesh.v1 import realtime_pb2, realtime_pb2_grpc  # noqa: E402

RATE, OUT_RATE, CHUNK_MS = pipeline.RATE, pipeline.OUT_RATE, pipeline.CHUNK_MS


async def realtime_session(address: str, questions: list[tuple[str, bytes]], endpointing_ms: int,
                           timeout_s: float, measured: bool = True) -> list[pipeline.Turn]:
    """One Converse session, one turn per question, as one continuous real-time audio stream."""
    requests: asyncio.Queue = asyncio.Queue()
    config = realtime_pb2.RealtimeSessionConfig(
        model="voicemesh/cascade", instructions=pipeline.INSTRUCTIONS, input_sample_rate_hz=RATE,
        output_sample_rate_hz=OUT_RATE, modalities=["text", "audio"],
        turn_detection=realtime_pb2.ServerVad(threshold=0.5, prefix_padding_ms=300,
                                              silence_duration_ms=endpointing_ms, create_response=True,
                                              interrupt_response=True))
    requests.put_nowait(realtime_pb2.ConverseRequest(session_update=config))

    async def feed():
        while (request := await requests.get()) is not None:
            yield request

    state = {"turn": None, "first_audio": None, "done": asyncio.Event()}

    async def follow(call) -> None:
        async for event in call:
            turn = state["turn"]
            kind = event.WhichOneof("event")
            if turn is None:
                continue
            if kind == "input_transcription" and event.input_transcription.final:
                turn.transcript = (turn.transcript + " " + event.input_transcription.text).strip()
            elif kind == "audio_delta" and state["first_audio"] is None:
                state["first_audio"] = time.monotonic()
            elif kind == "text_delta":
                turn.reply += event.text_delta.delta
            elif kind == "response_done":
                state["done"].set()

    turns: list[pipeline.Turn] = []
    silence = bytes(2 * RATE * CHUNK_MS // 1000)
    async with grpc.aio.insecure_channel(address) as channel:
        call = realtime_pb2_grpc.RealtimeServiceStub(channel).Converse(feed())
        follower = asyncio.create_task(follow(call))
        try:
            pacer = pipeline.Pacer()
            for question, pcm in questions:
                turn = pipeline.Turn("realtime", question, round(len(pcm) / 2 / RATE, 2))
                state.update(turn=turn, first_audio=None)
                state["done"].clear()
                begin = pacer.sent
                for chunk in chunks(pcm, rate=RATE, ms=CHUNK_MS):
                    requests.put_nowait(realtime_pb2.ConverseRequest(input_audio_append=chunk))
                    await pacer.tick(len(chunk) / 2 / RATE)
                end_wall = pacer.wall(begin + pipeline.speech_end_s(pcm))
                deadline = time.monotonic() + timeout_s
                while not state["done"].is_set():
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"no answer to {question!r} within {timeout_s:g} s")
                    if follower.done():
                        follower.result()
                        raise RuntimeError("the session ended early")
                    requests.put_nowait(realtime_pb2.ConverseRequest(input_audio_append=silence))
                    await pacer.tick(CHUNK_MS / 1000)
                if state["first_audio"] is not None:
                    turn.voice_to_voice_ms = (state["first_audio"] - end_wall) * 1000
                turn.reply = turn.reply.strip()
                turn.models = ["voicemesh/cascade"]
                if measured:
                    turns.append(turn)
                    pipeline.print_turn(turn)
                for _ in range(25):  # half a second of quiet between turns
                    requests.put_nowait(realtime_pb2.ConverseRequest(input_audio_append=silence))
                    await pacer.tick(CHUNK_MS / 1000)
        finally:
            requests.put_nowait(None)
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            call.cancel()
    return turns


def run_realtime(groups: list[list[tuple[str, bytes]]], args: argparse.Namespace) -> list[pipeline.Turn]:
    with tempfile.TemporaryDirectory(prefix="voicemesh-bench-") as state_dir:
        server = ServiceProcess("realtime", args=["--metrics-port", "-1", "--cascade-stt", args.stt,
                                                  "--cascade-llm", args.llm, "--cascade-tts", args.tts],
                                log_path=Path(state_dir) / "realtime.log")
        started = time.monotonic()
        with server:  # starts it and waits for SERVING; stops it at the end
            print(f"realtime up in {time.monotonic() - started:.1f} s at {server.address}", flush=True)
            asyncio.run(realtime_session(server.address, groups[0][:1], args.endpointing_ms, args.timeout,
                                         measured=False))  # warm-up
            turns: list[pipeline.Turn] = []
            for group in groups:
                turns += asyncio.run(realtime_session(server.address, group, args.endpointing_ms, args.timeout))
    return turns


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=12, help="measured turns per phase (default 12)")
    parser.add_argument("--turns-per-session", type=int, default=4, help="turns in one conversation (default 4)")
    parser.add_argument("--endpointing-ms", type=int, default=500, help="end-of-turn silence (default 500)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for one answer")
    parser.add_argument("--stt", default=pipeline.DEFAULT_STT)
    parser.add_argument("--llm", default=pipeline.DEFAULT_LLM)
    parser.add_argument("--tts", default=pipeline.DEFAULT_TTS)
    parser.add_argument("--phases", default="realtime,pipeline,orchestrator-realtime",
                        help="which phases to run (default all three)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "realtime.json")
    args = parser.parse_args(argv)

    print(f"synthesizing {args.turns} questions with piper…", flush=True)
    questions = pipeline.QUESTIONS
    spoken = [(q, synthesize(q)) for q in (questions * (args.turns // len(questions) + 1))[:args.turns]]
    groups = [spoken[i:i + args.turns_per_session] for i in range(0, len(spoken), args.turns_per_session)]
    phases = {p.strip() for p in args.phases.split(",")}
    realtime_turns: list[pipeline.Turn] = []
    pipeline_turns: list[pipeline.Turn] = []
    if "realtime" in phases:
        print("phase 1: realtime service, voicemesh/cascade (one process)", flush=True)
        realtime_turns = run_realtime(groups, args)
    if "pipeline" in phases:
        print("phase 2: the orchestrator over stt, llm and tts processes", flush=True)
        pipeline_turns = pipeline.run_mesh(groups, args)
    orchestrated_turns: list[pipeline.Turn] = []
    if "orchestrator-realtime" in phases:
        print("phase 3: the orchestrator over the realtime service (sessions with realtime=)", flush=True)
        orchestrated_turns = pipeline.run_mesh(groups, args, realtime="voicemesh/cascade")

    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average": os.getloadavg()},
        "models": {"stt": args.stt, "llm": args.llm, "tts": args.tts},
        "endpointing_ms": args.endpointing_ms,
        "realtime": pipeline.summarize(realtime_turns),
        "pipeline": pipeline.summarize(pipeline_turns),
        "orchestrator-realtime": pipeline.summarize(orchestrated_turns),
        "per_turn": [asdict(t) for t in realtime_turns + pipeline_turns + orchestrated_turns],
    }
    print("\nvoice to voice (ms, client clock)      p50       p95     n")
    for mode in ("realtime", "pipeline", "orchestrator-realtime"):
        row = report[mode]["voice_to_voice_ms"]
        print(f"  {mode:<34} {row['p50']:>7.0f}  {row['p95']:>8.0f}  {row['n']:>4}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
