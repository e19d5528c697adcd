"""One conversation from a WAV file (or a text) through a running mesh: ``voicemesh talk``.

The user's audio goes out in 20 ms chunks paced in real time, as a
microphone would send it, followed by silence until the agent has answered
every turn; the transcript, the agent's words and each turn's latency are
printed as they come, and the agent's audio is collected for a WAV file.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TextIO

from voicemesh.audio import chunks
from voicemesh.client.events import (
    AgentAudio,
    AgentText,
    AgentVideo,
    AvatarStopped,
    Event,
    SessionError,
    TurnDone,
    TurnMetrics,
    UserTranscript,
)
from voicemesh.client.session import AgentSession

CHUNK_MS = 20
NO_SPEECH_S = 10.0  # after the input ends, give up when not even an interim transcript came


@dataclass
class TalkResult:
    """What one conversation produced."""

    session_id: str = ""
    transcripts: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    metrics: list[TurnMetrics] = field(default_factory=list)
    errors: list[SessionError] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    sample_rate: int = 0
    frames: list[AgentVideo] = field(default_factory=list)  # the avatar's, with --avatar
    avatar_stopped: AvatarStopped | None = None


def format_metrics(m: TurnMetrics) -> str:
    """One line of turn latency, naming the models that served the turn."""
    def ms(value: float) -> str:
        return f"{value:.0f} ms" if value else "-"

    line = (f"turn {m.turn_id}: voice-to-voice {ms(m.voice_to_voice_ms)} (end of turn {ms(m.end_of_utterance_delay_ms)}, "
            f"STT final {ms(m.stt_final_latency_ms)}, LLM first token {ms(m.llm_ttft_ms)}, "
            f"TTS first audio {ms(m.tts_ttfb_ms)})")
    models = ", ".join(x for x in (m.stt_model, m.llm_model, m.tts_model) if x)
    if models:
        line += f"\n         models: {models}"
    if m.fallbacks:
        line += f"\n         fell back past: {'; '.join(m.fallbacks)}"
    return line


class Printer:
    """Readable live output: interim transcript on one rewritten line (on a terminal), agent words streamed."""

    def __init__(self, out: TextIO, *, live: bool | None = None):
        self.out = out
        self.live = out.isatty() if live is None else live
        self._interim = False
        self._agent_open = False
        self._pending: list[str] = []

    def _clear_interim(self) -> None:
        if self._interim:
            self.out.write("\r\033[K")
            self._interim = False

    def _close_agent(self) -> None:
        if self._agent_open:
            self.out.write("\n")
            self._agent_open = False
        for text in self._pending:
            self.out.write(text + "\n")
        self._pending.clear()

    def note(self, text: str) -> None:
        """A line that waits for the agent's sentence to end before it is printed."""
        if self._agent_open:
            self._pending.append(text)
        else:
            self.line(text)

    def line(self, text: str) -> None:
        self._clear_interim()
        self._close_agent()
        self.out.write(text + "\n")
        self.out.flush()

    def transcript(self, event: UserTranscript) -> None:
        if event.final:
            self.line(f"you:   {event.text.strip()}")
        elif self.live and not self._agent_open:
            self._clear_interim()
            self.out.write(f"you:   {event.text.strip()} …")
            self._interim = True
            self.out.flush()

    def agent_delta(self, text: str) -> None:
        self._clear_interim()
        if not self._agent_open:
            self.out.write("agent: ")
            self._agent_open = True
            text = text.lstrip()
        self.out.write(text)
        self.out.flush()

    def close(self) -> None:
        self._clear_interim()
        self._close_agent()
        self.out.flush()


class Conversation:
    """Drives one session: sends the input, follows the events, knows when every turn is answered."""

    def __init__(self, session: AgentSession, *, printer: Printer, timeout_s: float = 120.0):
        self.session = session
        self.printer = printer
        self.timeout_s = timeout_s
        self.result = TalkResult()
        self.user_turns = 0  # final transcripts (or texts) sent
        self.answered = 0  # turns the agent finished
        self.heard_speech = False
        self._changed = asyncio.Event()

    def handle(self, event: Event) -> None:
        result = self.result
        if isinstance(event, UserTranscript):
            self.heard_speech = True
            self.printer.transcript(event)
            if event.final and event.text.strip():
                result.transcripts.append(event.text.strip())
                self.user_turns += 1
        elif isinstance(event, AgentText):
            self.printer.agent_delta(event.delta)
        elif isinstance(event, AgentAudio):
            if result.sample_rate and event.sample_rate != result.sample_rate:
                raise RuntimeError(f"agent audio changed sample rate ({result.sample_rate} -> {event.sample_rate} Hz)")
            result.sample_rate = event.sample_rate
            result.audio += event.audio
        elif isinstance(event, AgentVideo):
            result.frames.append(event)
        elif isinstance(event, AvatarStopped):
            result.avatar_stopped = event
            self.printer.line(f"avatar stopped ({event.code}: {event.message}); audio goes on")
        elif isinstance(event, TurnDone):
            result.replies.append(event.text)
            self.answered += 1
            if event.interrupted:
                self.printer.line(f"       (interrupted; kept: {event.text!r})")
            else:
                self.printer.close()
        elif isinstance(event, TurnMetrics):
            result.metrics.append(event)
            self.printer.note(format_metrics(event))
        elif isinstance(event, SessionError):
            result.errors.append(event)
            self.printer.line(f"error: {event.code}: {event.message}")
        self._changed.set()

    def settled(self) -> bool:
        """Every user turn has its answer and its metrics have had a moment to arrive."""
        return self.answered >= max(1, self.user_turns)

    async def follow(self) -> None:
        async for event in self.session:
            self.handle(event)

    async def send_audio(self, pcm: bytes, rate: int, *, trailing_silence_s: float = 1.0) -> None:
        """Stream ``pcm`` in real time, then silence until every turn is answered (or the timeout)."""
        start = time.monotonic()
        sent = 0.0
        for chunk in chunks(pcm, rate=rate, ms=CHUNK_MS):
            await self.session.send_audio(chunk)
            sent += len(chunk) / 2 / rate
            await asyncio.sleep(max(0.0, start + sent - time.monotonic()))
        silence = bytes(2 * rate * CHUNK_MS // 1000)
        quiet_until = sent + trailing_silence_s
        while sent < quiet_until or not self.settled():
            if not self.heard_speech and sent > quiet_until + NO_SPEECH_S:
                raise RuntimeError(f"no speech was recognized in the input audio ({NO_SPEECH_S:g} s after it ended)")
            if sent > quiet_until + self.timeout_s:
                raise TimeoutError(f"no complete answer within {self.timeout_s:g} s after the audio ended")
            await self.session.send_audio(silence)
            sent += CHUNK_MS / 1000
            await asyncio.sleep(max(0.0, start + sent - time.monotonic()))

    async def send_text(self, text: str) -> None:
        self.user_turns += 1
        self.printer.line(f"you:   {text}")
        await self.session.send_text(text)
        await asyncio.wait_for(self._until_settled(), self.timeout_s)

    async def _until_settled(self) -> None:
        while not self.settled():
            self._changed.clear()
            await self._changed.wait()

    async def run(self, sender) -> TalkResult:
        """Run ``sender`` (a coroutine) while following events; end the input and drain when it returns."""
        self.result.session_id = self.session.session_id
        follower = asyncio.create_task(self.follow(), name="voicemesh-talk-events")
        try:
            send = asyncio.ensure_future(sender)
            done, _ = await asyncio.wait({send, follower}, return_when=asyncio.FIRST_COMPLETED)
            if follower in done and send not in done:
                send.cancel()
                await asyncio.gather(send, return_exceptions=True)
                follower.result()  # raises the session's error, if it failed
                raise RuntimeError("the orchestrator ended the session before the agent answered")
            send.result()
            # Metrics of the last turn may follow its TurnDone; take what comes in a short grace.
            await self.session.end_input()
            try:
                await asyncio.wait_for(asyncio.shield(follower), 5.0)
            except TimeoutError:
                pass  # the server keeps the stream open after end of input; we have what we need
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            self.printer.close()
        return self.result

