"""The STT's speculative final: how early in a pause it can start without losing words.

    .venv/bin/python bench/eager_final.py [--pauses 64,96,128,200] [--out bench/results/eager_final.json]

Once a pause has lasted ``EAGER_FINAL_MS`` (services/stt/stream.py), the STT decodes the utterance with
the audio it has, and that decode becomes the final when the pause ends the utterance: the earlier it
starts, the sooner the reply, but the clip then ends closer to the last voiced VAD frame and a trailing
consonant may be cut. This runs the real recognition stream (Silero VAD, endpointing, faster-whisper
tiny.en, one thread) in process, on the 34 questions of bench/quiz.py voiced by espeak-ng (en-us 160 wpm
and en-gb 190 wpm: voices the agent does not speak with) and by the piper voice, each followed by 1 s of
silence, once per pause, and reports per voice and pause the WER of the finals and how many speculative decodes
started (one per question is the least; more are pauses inside a question, each dropped when speech resumed,
with the held reply the orchestrator made for it). The VAD scores 32 ms frames, so a pause is rounded up to
them: 100 acts as 128.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import quiz  # noqa: E402  (bench/quiz.py: the questions)
from tests.speech import espeak, silence, speak, wer  # noqa: E402
from voicemesh.audio import chunks  # noqa: E402
from voicemesh.backend import RemoteOptions  # noqa: E402
from voicemesh.services.stt import stream as stt_stream  # noqa: E402
from voicemesh.services.stt.backend import RecognitionOptions, TranscriptEvent  # noqa: E402
from voicemesh.services.stt.backends.faster_whisper import (  # noqa: E402
    FasterWhisperBackend,
    FasterWhisperSettings,
)


PACE_S = 0.005  # 4x real time


async def finals(recognizer: FasterWhisperBackend, pcm: bytes) -> str:
    async def audio():
        for chunk in chunks(pcm, rate=16000):
            yield chunk
            await asyncio.sleep(PACE_S)  # each chunk is read and scored on its own, as in real time
    texts = []
    async for event in recognizer.recognize(RecognitionOptions(language="en", sample_rate_hz=16000), audio()):
        if isinstance(event, TranscriptEvent) and event.final:
            texts.append(event.text)
    return " ".join(texts)


async def run(pauses: list[int]) -> dict:
    recognizer = FasterWhisperBackend(model="tiny.en", options=RemoteOptions(),
                                      settings=FasterWhisperSettings(workers=1, threads=1))
    await recognizer.load()
    questions = [q for q, _ in quiz.QUESTIONS]
    voices = {"espeak-ng en-us 160": [espeak(q, voice="en-us", speed=160) for q in questions],
              "espeak-ng en-gb 190": [espeak(q, voice="en-gb", speed=190) for q in questions],
              "piper": [speak(q) for q in questions]}
    results: dict = {}
    eager = stt_stream.RecognizeStream._eager_decode
    used = {"n": 0}

    async def counted(self, *args):
        used["n"] += 1
        return await eager(self, *args)
    stt_stream.RecognizeStream._eager_decode = counted
    for pause in pauses:
        stt_stream.EAGER_FINAL_MS = pause
        for voice, clips in voices.items():
            heard = [await finals(recognizer, clip + silence(1.0)) for clip in clips]
            results.setdefault(voice, {})[pause] = {"wer": wer(list(zip(questions, heard))),
                                                    "speculative_decodes": used["n"], "heard": heard}
            print(f"{voice:22} speculative final at {pause:4d} ms of pause: WER {results[voice][pause]['wer']:.3f} "
                  f"({used['n']} speculative decodes for {len(clips)} questions)", flush=True)
            used["n"] = 0
    await recognizer.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pauses", default="64,96,128,200",
                        help="comma-separated pauses (ms) to start the speculative decode at")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "eager_final.json")
    args = parser.parse_args()
    results = asyncio.run(run([int(p) for p in args.pauses.split(",")]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
