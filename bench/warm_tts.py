"""First agent audio with and without the TTS stream opened ahead (``--warm-tts-stream``), in one run.

Starts the STT, LLM and TTS services (local models) and two orchestrators over
them, one with ``--warm-tts-stream`` and one with ``--no-warm-tts-stream``, and
opens one session on each. Turns alternate between the two sessions (the
order flips every round), so both see the same machine load. Per turn, the
client's time from sending the request to the first AgentAudio is measured
for:

* ``text``: a text turn, answered by the LLM (the stream's open overlaps the
  LLM's first token);
* ``say``: given text (Say), so the stream's open is all on the path.

Each is measured with the services' API keys off (no ledger) and on (a
SQLite ledger: every stream's open checks the key and its quotas), as
``--auth off,on`` asks. Prints p50/mean per case and saves
bench/results/warm_tts.json.

    .venv/bin/python bench/warm_tts.py --rounds 20
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

from tests.orchestrator.client import LLM, TTS, AgentClient, session_config  # noqa: E402
from voicemesh.mesh import MeshConfig  # noqa: E402
from voicemesh.metering import keys  # noqa: E402
from voicemesh.metering.ledger import open_store  # noqa: E402
from voicemesh.process import ServiceProcess  # noqa: E402
from voicemesh.v1 import agent_pb2  # noqa: E402

QUESTIONS = ["What is the capital of France?", "Name a colour of the sky.", "What do bees make?",
             "How many legs does a cat have?"]
SAYINGS = ["Sure, I can help you with that right away.", "Here is what I found for you today.",
           "That is a good question, let me think.", "Okay, the meeting is moved to Friday."]
ARGS = {"stt": ["--workers", "1", "--threads", "1"],
        "llm": ["--preload", LLM, "--temperature", "0", "--llama-threads", "1"],
        "tts": ["--preload", TTS, "--piper-workers", "1"]}


async def first_audio(session: AgentClient, turn: int, **request) -> float:
    """Seconds from sending ``request`` to the first agent audio of ``turn`` (waits for the turn's end)."""
    sent = time.monotonic()
    session.send(**request)
    first = await session.wait_for(lambda e: e.kind == "agent_audio" and e.event.turn_id == turn, timeout=120)
    await session.turn_done(turn, timeout=120)
    await asyncio.sleep(0.3)  # the reply's stream ends and, when on, the next turn's opens: as between real turns
    return first.at - sent


async def measure(auth: bool, rounds: int, folder: Path) -> dict:
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
        figures: dict[str, dict[str, list[float]]] = {arm: {"text": [], "say": []} for arm in orchestrators}
        async with (AgentClient(orchestrators["warm"].address, session_config(), metadata=metadata) as warm,
                    AgentClient(orchestrators["cold"].address, session_config(), metadata=metadata) as cold):
            sessions = {"warm": warm, "cold": cold}
            for s in sessions.values():
                await s.wait_for(lambda e: e.kind == "started")
            turn = 0
            for i in range(rounds + 1):  # round 0 warms the models and caches up, and is not counted
                order = ["warm", "cold"] if i % 2 else ["cold", "warm"]
                turn += 2
                for arm in order:
                    text = await first_audio(sessions[arm], turn - 1, text=QUESTIONS[i % len(QUESTIONS)])
                    say = await first_audio(sessions[arm], turn, say=agent_pb2.Say(text=SAYINGS[i % len(SAYINGS)]))
                    if i:
                        figures[arm]["text"].append(text)
                        figures[arm]["say"].append(say)
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
    parser.add_argument("--rounds", type=int, default=20, help="turns of each kind per orchestrator and auth mode")
    parser.add_argument("--auth", default="off,on", help="API keys off (no ledger) and/or on (SQLite ledger)")
    args = parser.parse_args()
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "rounds": args.rounds}
    for mode in args.auth.split(","):
        with tempfile.TemporaryDirectory(prefix=f"warm-tts-{mode}-") as tmp:
            figures = await measure(mode == "on", args.rounds, Path(tmp))
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
