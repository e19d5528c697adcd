"""Voice-to-voice latency of spoken turns: the mesh against the same backends in one process.

    .venv/bin/python bench/conversation.py [--turns 20] [--turns-per-session 4]

Phase 1 (mesh): starts stt, llm, tts and the orchestrator as separate
processes (as ``voicemesh up`` does: models preloaded and warmed before
SERVING, greedy LLM, the smart-turn policy, preemptive generation) and talks
to it with ``AgentSession``: each turn is a question of 1-4 s, spoken by
piper and by espeak-ng in turn, streamed in real time in 20 ms chunks, then
silence until the agent has answered. No unmeasured warm-up turn: the first
turn of each session is reported apart from the rest. Per turn it records the
orchestrator's metrics (end-of-turn delay, STT final, LLM first token, TTS
first audio, server voice to voice) and the voice-to-voice latency seen by
the client (end of speech in the audio it sent to the first agent audio it
got).

Phase 2 (in process): the same backends in this process with the session's
turn detection, sampling, preemption and LLM/TTS overlap, each stage defined
as the orchestrator defines it (see ``conversation_in_process.py``).

Prints a table with p50/p95 of each phase, first turns against the rest and
the mesh / in-process ratio per stage, and saves everything as JSON in
bench/results/, with a PNG latency plot beside it (``--no-plot`` skips it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from conversation_in_process import run_in_process_async
from conversation_plot import save_plot
from conversation_turns import (CHUNK_MS, INSTRUCTIONS, OUT_RATE, QUESTIONS, RATE, Pacer, Turn, print_turn,
                                speech_end_s)

from voicemesh.audio import chunks
from voicemesh.client import AgentAudio, AgentSession, TurnDetection, TurnDone, TurnMetrics, UserTranscript
from voicemesh.client.local import LocalMesh, LocalMeshOptions, free_port_base
from voicemesh.client.session import DEFAULT_LLM, DEFAULT_STT, DEFAULT_TTS
from voicemesh.samples import synthesize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.speech import espeak  # noqa: E402  (a voice the agent does not speak with)


# --- phase 1: through the mesh ---------------------------------------------------------------------

async def mesh_session(address: str, questions: list[tuple[str, str, bytes]], endpointing_ms: int,
                       timeout_s: float, *, mode: str = "mesh", api_key: str | None = None,
                       realtime: str | None = None) -> list[Turn]:
    """One session, one turn per question, sent as one continuous real-time audio stream (on the pipeline,
    or on the ``realtime`` model)."""
    turns: list[Turn] = []
    state = {"turn": None, "first_audio": None, "done": asyncio.Event(), "metrics": asyncio.Event()}
    silence = bytes(2 * RATE * CHUNK_MS // 1000)
    session = AgentSession(address=address, api_key=api_key, instructions=INSTRUCTIONS, input_sample_rate=RATE,
                           realtime=realtime,
                           output_sample_rate=OUT_RATE, first_result_timeout_ms=30000,
                           turn_detection=TurnDetection(min_endpointing_delay_ms=endpointing_ms))

    async def follow() -> None:
        async for event in session:
            turn: Turn | None = state["turn"]
            if turn is None:
                continue
            if isinstance(event, UserTranscript) and event.final:
                turn.transcript = (turn.transcript + " " + event.text).strip()
            elif isinstance(event, AgentAudio) and state["first_audio"] is None:
                state["first_audio"] = time.monotonic()
            elif isinstance(event, TurnDone):
                turn.reply = event.text
                state["done"].set()
            elif isinstance(event, TurnMetrics):
                turn.end_of_turn_ms, turn.stt_final_ms = event.end_of_utterance_delay_ms, event.stt_final_latency_ms
                turn.llm_ttft_ms, turn.tts_ttfb_ms = event.llm_ttft_ms, event.tts_ttfb_ms
                turn.server_voice_to_voice_ms = event.voice_to_voice_ms
                turn.models = [event.stt_model, event.llm_model, event.tts_model]
                state["metrics"].set()

    async with session:
        follower = asyncio.create_task(follow())
        try:
            pacer = Pacer()
            for index, (voice, question, pcm) in enumerate(questions):
                turn = Turn(mode, question, round(len(pcm) / 2 / RATE, 2), voice=voice, first=index == 0)
                state.update(turn=turn, first_audio=None)
                state["done"].clear()
                state["metrics"].clear()
                begin = pacer.sent
                for chunk in chunks(pcm, rate=RATE, ms=CHUNK_MS):
                    await session.send_audio(chunk)
                    await pacer.tick(len(chunk) / 2 / RATE)
                end_wall = pacer.wall(begin + speech_end_s(pcm))
                deadline = time.monotonic() + timeout_s
                while not (state["done"].is_set() and state["metrics"].is_set()):
                    if time.monotonic() > deadline:  # count it as failed and leave this session
                        turn.error = f"no complete answer within {timeout_s:g} s"
                        print_turn(turn)
                        turns.append(turn)
                        return turns
                    if follower.done():
                        follower.result()
                        raise RuntimeError("the session ended early")
                    await session.send_audio(silence)
                    await pacer.tick(CHUNK_MS / 1000)
                if state["first_audio"] is not None:
                    turn.voice_to_voice_ms = (state["first_audio"] - end_wall) * 1000
                turns.append(turn)
                print_turn(turn)
                for _ in range(25):  # half a second of quiet between turns
                    await session.send_audio(silence)
                    await pacer.tick(CHUNK_MS / 1000)
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
    return turns


def run_mesh(groups: list[list[tuple[str, str, bytes]]], args: argparse.Namespace, *,
             realtime: str | None = None) -> list[Turn]:
    """The orchestrator over separate processes: the pipeline, or (``realtime``) the realtime service."""
    mode = "mesh-realtime" if realtime else "mesh"
    with tempfile.TemporaryDirectory(prefix="voicemesh-bench-") as tmp:
        state_dir = args.logs / mode if args.logs else Path(tmp)  # --logs keeps the services' logs (at INFO)
        options = LocalMeshOptions(state_dir=state_dir, port_base=free_port_base(), stt=args.stt, llm=args.llm,
                                   tts=args.tts, log_level="INFO" if args.logs else "WARNING",
                                   realtime=bool(realtime))
        started = time.monotonic()
        with LocalMesh(options) as mesh:
            print(f"mesh up in {time.monotonic() - started:.1f} s at {mesh.orchestrator_address}", flush=True)
            turns: list[Turn] = []
            for group in groups:
                turns += asyncio.run(mesh_session(mesh.orchestrator_address, group, args.endpointing_ms,
                                                  args.timeout, api_key=mesh.api_key, mode=mode, realtime=realtime))
    return turns



# --- report -----------------------------------------------------------------------------------------

METRICS = ("voice_to_voice_ms", "end_of_turn_ms", "stt_final_ms", "llm_ttft_ms", "tts_ttfb_ms",
           "server_voice_to_voice_ms")




def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def summarize(all_turns: list[Turn]) -> dict:
    turns = [t for t in all_turns if not t.error]
    out = {"turns": len(turns), "failed": len(all_turns) - len(turns)}
    for name in METRICS:
        values = [getattr(t, name) for t in turns if getattr(t, name) > 0]
        out[name] = {"p50": round(percentile(values, 50), 1), "p95": round(percentile(values, 95), 1),
                     "mean": round(statistics.fmean(values), 1) if values else 0.0, "n": len(values)}
    for label, subset in (("first_turns", [t for t in turns if t.first]), ("later_turns", [t for t in turns if not t.first]),
                          ("piper_voice", [t for t in turns if t.voice == "piper"]),
                          ("espeak_voice", [t for t in turns if t.voice == "espeak-ng"])):
        values = [t.voice_to_voice_ms for t in subset if t.voice_to_voice_ms > 0]
        out[label] = {"voice_to_voice_p50": round(percentile(values, 50), 1),
                      "voice_to_voice_p95": round(percentile(values, 95), 1), "n": len(values)}
    later = out["later_turns"]["voice_to_voice_p50"]
    out["first_over_later_p50"] = round(out["first_turns"]["voice_to_voice_p50"] / later, 3) if later else 0.0
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=20, help="measured turns per phase (default 20)")
    parser.add_argument("--turns-per-session", type=int, default=4, help="turns in one conversation (default 4)")
    parser.add_argument("--endpointing-ms", type=int, default=500, help="the session's min_endpointing_delay_ms in both phases (default 500; smart-turn ends a clearly complete turn after 300 ms)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for one whole answer")
    parser.add_argument("--stt", default=DEFAULT_STT)
    parser.add_argument("--llm", default=DEFAULT_LLM)
    parser.add_argument("--tts", default=DEFAULT_TTS)
    parser.add_argument("--phases", default="mesh,in-process", help="which phases to run (default both)")
    parser.add_argument("--no-plot", action="store_true", help="do not save the PNG latency plot")
    parser.add_argument("--logs", type=Path, help="keep each mesh phase's state and service logs (INFO) in this folder")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "conversation.json")
    args = parser.parse_args(argv)

    print(f"synthesizing {args.turns} questions, with piper and espeak-ng in turn…", flush=True)
    texts = (QUESTIONS * (args.turns // len(QUESTIONS) + 1))[:args.turns]
    spoken = [("piper", q, synthesize(q)) if i % 2 == 0 else ("espeak-ng", q, espeak(q)) for i, q in enumerate(texts)]
    groups = [spoken[i:i + args.turns_per_session] for i in range(0, len(spoken), args.turns_per_session)]
    lengths = [len(p) / 2 / RATE for _, _, p in spoken]
    print(f"questions: {min(lengths):.1f}–{max(lengths):.1f} s of speech", flush=True)

    phases = {p.strip() for p in args.phases.split(",")}
    load_start = os.getloadavg()[0]
    mesh_turns: list[Turn] = []
    in_process_turns: list[Turn] = []
    if "mesh" in phases:
        print("phase 1: the mesh (four processes over gRPC)", flush=True)
        mesh_turns = run_mesh(groups, args)
    if "in-process" in phases:
        print("phase 2: the same backends in one process", flush=True)
        in_process_turns = asyncio.run(run_in_process_async(groups, args))

    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "models": {"stt": args.stt, "llm": args.llm, "tts": args.tts},
        "endpointing_ms": args.endpointing_ms,
        "mesh": summarize(mesh_turns),
        "in_process": summarize(in_process_turns),
        "per_turn": [asdict(t) for t in mesh_turns + in_process_turns],
        "load_average": {"start": load_start, "end": os.getloadavg()[0]},
    }
    mesh_v2v, local_v2v = report["mesh"]["voice_to_voice_ms"], report["in_process"]["voice_to_voice_ms"]
    if local_v2v["p50"] and mesh_v2v["p50"]:
        report["ratio_mesh_to_in_process"] = {"p50": round(mesh_v2v["p50"] / local_v2v["p50"], 3),
                                              "p95": round(mesh_v2v["p95"] / local_v2v["p95"], 3)}
        report["ratio_per_stage_p50"] = {name: round(report["mesh"][name]["p50"] / report["in_process"][name]["p50"], 3)
                                         for name in METRICS if report["in_process"][name]["p50"]}
    labels = {"voice_to_voice_ms": "voice to voice (client)", "end_of_turn_ms": "end-of-turn delay",
              "stt_final_ms": "STT final", "llm_ttft_ms": "LLM first token", "tts_ttfb_ms": "TTS first audio",
              "server_voice_to_voice_ms": "voice to voice (server)"}
    mesh, local = report["mesh"], report["in_process"]
    print(f"\n{'ms, p50 / p95':<26}{'mesh (n=%d, failed %d)' % (mesh['turns'], mesh['failed']):>28}"
          f"{'in process (n=%d, failed %d)' % (local['turns'], local['failed']):>34}")
    for name in METRICS:
        print(f"{labels[name]:<26}{mesh[name]['p50']:>17.0f} / {mesh[name]['p95']:<8.0f}"
              f"{local[name]['p50']:>23.0f} / {local[name]['p95']:<8.0f}")
    print(f"load average (1 min) at start {report['load_average']['start']:.1f}, "
          f"at end {report['load_average']['end']:.1f} on {report['machine']['cpus']} CPUs")
    for label, key in (("first turn of a session", "first_turns"), ("later turns", "later_turns"),
                       ("piper questions", "piper_voice"), ("espeak-ng questions", "espeak_voice")):
        print(f"{'v2v ' + label:<26}{mesh[key]['voice_to_voice_p50']:>17.0f} / {mesh[key]['voice_to_voice_p95']:<8.0f}"
              f"{local[key]['voice_to_voice_p50']:>23.0f} / {local[key]['voice_to_voice_p95']:<8.0f}")
    print(f"first turn / later turns, v2v p50: mesh {mesh['first_over_later_p50']:.2f}, "
          f"in process {local['first_over_later_p50']:.2f} (target <= 1.10)")
    if "ratio_mesh_to_in_process" in report:
        ratio = report["ratio_mesh_to_in_process"]
        print(f"mesh / in-process voice-to-voice: p50 {ratio['p50']:.3f}, p95 {ratio['p95']:.3f} (target <= 1.03)")
        print("mesh / in-process per stage, p50: " + ", ".join(f"{labels[k]} {v:.2f}"
                                                             for k, v in report["ratio_per_stage_p50"].items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {args.out}")
    if not args.no_plot:
        print(f"saved {save_plot(report, args.out.with_suffix('.png'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
