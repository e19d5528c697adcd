"""First agent audio of voice turns with and without the TTS stream opened ahead (``--warm-tts-stream``), in one run.

Starts the STT, LLM and TTS services (local models) and two orchestrators over
them, one with ``--warm-tts-stream`` (the reply's TTS stream is opened when
the STT hears the user start speaking) and one with ``--no-warm-tts-stream``
(it is opened when the reply starts), and opens one session on each. Spoken
questions (piper, synthesized before the sessions) alternate between the two
sessions, the order flipping every round, so both see the same machine load.
Per turn it records:

* ``v2v``: from the last chunk of the question's audio sent to the first
  AgentAudio received (the client's voice-to-voice, endpointing included);
* ``tts_ttfb``: the turn's ``tts_ttfb_ms`` from TurnMetrics (the session's
  own figure for the voice's first audio).

Each is measured with the services' API keys off (no ledger) and on (a
SQLite ledger: every stream's open checks the key and its quotas), as
``--auth off,on`` asks. Prints p50/mean per case and saves
bench/results/warm_tts.json.

    .venv/bin/python bench/warm_tts.py --rounds 12
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.orchestrator.client import LLM, RATE, TTS, AgentClient, session_config  # noqa: E402
from tests.speech import speak  # noqa: E402
from voicemesh.mesh import MeshConfig  # noqa: E402
from voicemesh.metering import keys  # noqa: E402
from voicemesh.metering.ledger import open_store  # noqa: E402
from voicemesh.process import ServiceProcess  # noqa: E402

QUESTIONS = ["What is the capital of France?", "Name a colour of the sky.", "What do bees make?",
             "How many legs does a cat have?"]
ARGS = {"stt": ["--workers", "1", "--threads", "1"],
        "llm": ["--preload", LLM, "--temperature", "0", "--llama-threads", "1"],
        "tts": ["--preload", TTS, "--piper-workers", "1"]}


async def voice_turn(session: AgentClient, turn: int, pcm: bytes) -> tuple[float, float]:
    """Seconds from the end of the question's audio to the first agent audio of ``turn``, and its tts_ttfb."""
    session.say(pcm)
    first = await session.wait_for(lambda e: e.kind == "agent_audio" and e.event.turn_id == turn, timeout=120)
    await session.turn_done(turn, timeout=120)
    metrics = await session.wait_for(lambda e: e.kind == "metrics" and e.event.turn_id == turn, timeout=30)
    await asyncio.sleep(0.5)  # a pause between turns
    return first.at - session.speech_chunks[-1][-1], metrics.event.tts_ttfb_ms / 1000


async def measure(auth: bool, rounds: int, folder: Path, speech: list[bytes]) -> dict:
    env, metadata = {}, ()
    if auth:
        url = f"sqlite:///{folder}/ledger.db"
        env = {"VOICEMESH_LEDGER": url}
        store = open_store(url)
        _, key = keys.create_key(store, "bench")
        store.close()
        metadata = (("authorization", f"Bearer {key}"),)
    services = {m: ServiceProcess(m, args=["--metrics-port", "-1", *ARGS[m]], env=env,
                                  log_path=folder / f"{m}.log").start() for m in ARGS}
    orchestrators = {}
    try:
        for proc in services.values():
            proc.wait_serving()
        mesh = folder / "mesh.json"
        MeshConfig({m: {"*": [p.address]} for m, p in services.items()}).write(mesh)
        for arm, flag in (("warm", "--warm-tts-stream"), ("cold", "--no-warm-tts-stream")):
            orchestrators[arm] = ServiceProcess("orchestrator", env=env, log_path=folder / f"orch-{arm}.log", args=[
                "--metrics-port", "-1", "--mesh", str(mesh), "--max-tokens", "30", flag]).start()
        for proc in orchestrators.values():
            proc.wait_serving()
        figures: dict[str, dict[str, list[float]]] = {arm: {"v2v": [], "tts_ttfb": []} for arm in orchestrators}
        async with (AgentClient(orchestrators["warm"].address, session_config(), metadata=metadata) as warm,
                    AgentClient(orchestrators["cold"].address, session_config(), metadata=metadata) as cold):
            sessions = {"warm": warm, "cold": cold}
            for s in sessions.values():
                await s.wait_for(lambda e: e.kind == "started")
                s.start_audio()
            for i in range(rounds + 1):  # round 0 warms the models and caches up, and is not counted
                for arm in (["warm", "cold"] if i % 2 else ["cold", "warm"]):
                    v2v, ttfb = await voice_turn(sessions[arm], i + 1, speech[i % len(speech)])
                    if i:
                        figures[arm]["v2v"].append(v2v)
                        figures[arm]["tts_ttfb"].append(ttfb)
        return figures
    finally:
        for proc in [*orchestrators.values(), *services.values()]:
            proc.stop()


def summary(values: list[float]) -> dict:
    ms = sorted(v * 1000 for v in values)
    return {"p50_ms": round(statistics.median(ms), 1), "mean_ms": round(statistics.fmean(ms), 1), "n": len(ms),
            "all_ms": [round(v, 1) for v in ms]}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12, help="voice turns per orchestrator and auth mode")
    parser.add_argument("--auth", default="off,on", help="API keys off (no ledger) and/or on (SQLite ledger)")
    args = parser.parse_args()
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "rounds": args.rounds}
    speech = [speak(q, RATE) for q in QUESTIONS]  # before any session: piper would block the client's loop
    for mode in args.auth.split(","):
        with tempfile.TemporaryDirectory(prefix=f"warm-tts-{mode}-") as tmp:
            figures = await measure(mode == "on", args.rounds, Path(tmp), speech)
        for arm, kinds in figures.items():
            for kind, values in kinds.items():
                results[f"auth_{mode}/{kind}/{arm}"] = summary(values)
                found = results[f"auth_{mode}/{kind}/{arm}"]
                print(f"auth {mode:3} {kind:4} {arm:4}: first audio p50 {found['p50_ms']:6.1f} ms, "
                      f"mean {found['mean_ms']:6.1f} ms (n={found['n']})", flush=True)
    out = Path(__file__).parent / "results" / "warm_tts.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"saved {out}")


if __name__ == "__main__":
    asyncio.run(main())
