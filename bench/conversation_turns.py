"""What both phases of bench/conversation.py share: the questions, one measured turn, real-time pacing."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np

RATE = 16000
OUT_RATE = 24000
CHUNK_MS = 20
INSTRUCTIONS = "You are a helpful assistant. Answer the question in English with one short, factual sentence."
QUESTIONS = [
    "What is the capital of France?",
    "How are you doing today, my friend?",
    "What time is it?",
    "Tell me a joke.",
    "Can you explain to me how a rainbow forms after it rains?",
    "What is the weather like in Paris?",
    "Can you recommend a good book?",
    "How many legs does a spider have?",
    "What color is the sky?",
    "Who wrote Romeo and Juliet?",
    "What is two plus two?",
    "What is the best way to learn a new language quickly and well?",
    "Please book a table for two people.",
    "What is the largest ocean on Earth?",
    "How do I boil an egg?",
    "Turn off the lights in the kitchen.",
    "What is your name?",
    "If I leave Paris at noon by train, when will I arrive in Lyon?",
    "Which planet is closest to the sun?",
    "Can you tell me a short story about a dog?",
    "What should I cook for dinner tonight?",
    "How far away is the moon?",
    "Could you suggest a few healthy snacks that are easy to take to work?",
    "What is the tallest mountain in the world?",
    "Remind me to call my mother tomorrow morning.",
    "Why is the ocean salty?",
    "What language do people speak in Brazil?",
    "Give me a fun fact about cats.",
]


def speech_end_s(pcm: bytes, rate: int = RATE, threshold: float = 0.01) -> float:
    """Seconds from the start of ``pcm`` to the end of its last 20 ms frame with speech energy."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    frame = rate * CHUNK_MS // 1000
    last = 0
    for i in range(0, len(samples) - frame + 1, frame):
        if np.sqrt(np.mean(samples[i:i + frame] ** 2)) > threshold:
            last = i + frame
    return last / rate


@dataclass
class Turn:
    """One measured turn (ms; 0 when not measured)."""

    mode: str
    question: str
    speech_s: float
    transcript: str = ""
    reply: str = ""
    voice_to_voice_ms: float = 0.0  # client clock: end of speech sent -> first agent audio received
    end_of_turn_ms: float = 0.0
    stt_final_ms: float = 0.0
    llm_ttft_ms: float = 0.0
    tts_ttfb_ms: float = 0.0
    server_voice_to_voice_ms: float = 0.0
    models: list[str] = field(default_factory=list)
    error: str = ""
    voice: str = "piper"  # who spoke the question: piper or espeak-ng
    first: bool = False  # the first turn of its session


class Pacer:
    """Real-time clock of an audio stream: sleeps so that N seconds of audio take N seconds."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.sent = 0.0

    async def tick(self, seconds: float) -> None:
        self.sent += seconds
        await asyncio.sleep(max(0.0, self.start + self.sent - time.monotonic()))

    def wall(self, audio_s: float) -> float:
        """Wall time at which the audio position ``audio_s`` was sent."""
        return self.start + audio_s


def print_turn(turn: Turn) -> None:
    if turn.error:
        print(f"  [{turn.mode:<10}] FAILED {turn.question!r}: {turn.error}", flush=True)
        return
    print(f"  [{turn.mode:<10}] {turn.voice:<9}{'1st' if turn.first else '   '} v2v {turn.voice_to_voice_ms:6.0f} ms | end of turn {turn.end_of_turn_ms:5.0f} | "
          f"STT final {turn.stt_final_ms:5.0f} | LLM TTFT {turn.llm_ttft_ms:5.0f} | TTS TTFB {turn.tts_ttfb_ms:5.0f} | "
          f"{turn.question!r} -> heard {turn.transcript!r} -> {turn.reply[:60]!r}", flush=True)
