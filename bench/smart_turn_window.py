"""Smart Turn's verdict on finished questions: the user's turn alone in its window, or with earlier speech.

    .venv/bin/python bench/smart_turn_window.py [--pause-ms 300] [--gap-s 2.0]

The 28 questions of bench/conversation.py, spoken by piper and by espeak-ng
(a voice the agent does not speak with), each followed by ``--pause-ms`` of
silence (the silence after which the smart-turn policy asks for a verdict).
Window "turn": 500 ms of silence, then the question, as the session gives the
model now (from a little before the turn's first speech start). Window "with
history": the previous question, ``--gap-s`` of silence, then the question: the
last 8 s of the session's audio, as the session gave it before.

Reports per voice the mean probability and the share of finished questions the
model calls complete (>= 0.5, its decision boundary) and confident (>= 0.85,
``CONFIDENT`` in voicemesh/speech/turn/smart.py), and saves JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from conversation_turns import QUESTIONS  # noqa: E402

from tests.speech import espeak, speak  # noqa: E402
from voicemesh.audio import pcm_to_float  # noqa: E402
from voicemesh.speech.turn.model import RATE, SmartTurn  # noqa: E402
from voicemesh.speech.turn.smart import CONFIDENT, UNLIKELY  # noqa: E402


def speech_only(samples: np.ndarray, floor: float = 0.01) -> np.ndarray:
    """The clip without the synthesizer's leading and trailing silence."""
    loud = np.flatnonzero(np.abs(samples) > floor)
    return samples[loud[0]: loud[-1] + 1]


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pause-ms", type=int, default=300, help="silence after each question (default 300)")
    parser.add_argument("--gap-s", type=float, default=2.0, help="silence between the previous question and this one")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/smart_turn_window.json")
    args = parser.parse_args(argv)

    model = SmartTurn()
    pause = silence(args.pause_ms / 1000)
    report: dict = {"pause_ms": args.pause_ms, "gap_s": args.gap_s, "questions": len(QUESTIONS), "voices": {}}
    for voice, render in (("piper", speak), ("espeak-ng", espeak)):
        clips = [speech_only(pcm_to_float(render(q))) for q in QUESTIONS]
        windows = {
            "turn": [np.concatenate([silence(0.5), clip, pause]) for clip in clips],
            "with history": [np.concatenate([clips[i - 1], silence(args.gap_s), clip, pause])
                             for i, clip in enumerate(clips)],
        }
        report["voices"][voice] = {}
        for name, audio in windows.items():
            p = np.array([model.probability(a) for a in audio])
            row = {"mean": round(float(p.mean()), 3), "complete": round(float((p >= UNLIKELY).mean()), 3),
                   "confident": round(float((p >= CONFIDENT).mean()), 3),
                   "probabilities": [round(float(x), 3) for x in p]}
            report["voices"][voice][name] = row
            print(f"{voice:10s} {name:13s} mean {row['mean']:.2f}   complete (>= {UNLIKELY}) {row['complete']:.0%}"
                  f"   confident (>= {CONFIDENT}) {row['confident']:.0%}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
