"""Phase 2 of bench/conversation.py: the STT, LLM and TTS backends loaded in this process (no gRPC, no
orchestrator), set up as the mesh's session is, so the mesh / in-process ratio compares like with like.

What it shares with the mesh phase, on purpose:

* turn detection: the orchestrator's default policy (``smart-turn``, the same
  ``TurnDetector`` with the session's min/max delays); the STT closes an
  utterance after the detector's ``stt_silence_ms`` (300 ms), the model's
  verdict on the user's last audio moves the end-of-turn wait;
* sampling: greedy (temperature 0), as ``voicemesh up`` runs the default LLM;
* the model's window: the user's turn from 500 ms before its first speech
  start; at the STT's end-candidate interim (its final decode at a pause) the
  verdict is made already on the audio to 200 ms past the pause's start, and
  the final reuses it;
* preemption: while the end-of-turn wait runs, and already on the STT's
  end-candidate interim unless ``VOICEMESH_SPECULATE_ON_INTERIMS=0`` (which the
  mesh's orchestrator reads too; on by default), a held reply is generated to the words so
  far; released when the turn ends on the same words, dropped otherwise;
* overlap: the LLM's deltas stream into a ``SynthesisStream`` (the TTS
  service's own class, with its default limits: first clause, 100 ms chunks)
  while the LLM goes on, instead of synthesizing inside the LLM loop;
* stages, defined as ``orchestrator.events.turn_metrics`` defines them: end of
  speech is the STT's end of speech on the audio timeline; STT final, end of
  turn and server voice-to-voice are measured from it; LLM first token from
  the request; TTS first audio from the first text given to the voice to its
  first audio (a held reply: when it was synthesized). The client figure is
  measured from the energy end of speech in the audio sent, as in phase 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import time

import numpy as np
from conversation_turns import CHUNK_MS, INSTRUCTIONS, OUT_RATE, RATE, Pacer, Turn, print_turn, speech_end_s

from voicemesh.audio import chunks

MAX_DELAY_MS = 3000  # the session default (orchestrator.config)
SPECULATE = os.environ.get("VOICEMESH_SPECULATE_ON_INTERIMS", "1").lower() in ("1", "true", "yes", "on")
PRE_SPEECH_MS = 500  # as orchestrator/pipeline.py


class HeldReply:
    """A reply as the orchestrator runs one: LLM deltas into a synthesis stream; its first audio goes out at
    ``release`` (at once when not held)."""

    def __init__(self, owner: InProcess, history: list, session: object, *, held: bool):
        self.owner, self.history, self.session = owner, history, session
        self.released = None if held else time.monotonic()
        self.llm_request = self.llm_first = self.tts_first_text = self.first_synthesized = None
        self.text = ""
        self.task = asyncio.create_task(self._run())

    def release(self) -> None:
        self.released = time.monotonic()

    @property
    def first_audio(self) -> float | None:
        if self.first_synthesized is None or self.released is None:
            return None
        return max(self.first_synthesized, self.released)

    async def cancel(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    async def _run(self) -> None:
        from voicemesh.services.llm.backend import CancelToken, GenerationRequest, Message, Sampling, TextDelta
        from voicemesh.services.tts.backend import VoiceOptions
        from voicemesh.services.tts.stream import Chunk, StreamLimits, SynthesisStream

        o = self.owner
        texts: asyncio.Queue = asyncio.Queue()

        async def inputs():
            while (piece := await texts.get()) is not None:
                yield piece

        async def generate() -> None:
            request = GenerationRequest(messages=(Message("system", INSTRUCTIONS), *self.history),
                                        sampling=Sampling(temperature=0.0))
            self.llm_request = time.monotonic()
            try:
                async for event in o.llm.generate(request, session=self.session, cancel=CancelToken()):
                    if isinstance(event, TextDelta) and event.text:
                        self.llm_first = self.llm_first or time.monotonic()
                        self.tts_first_text = self.tts_first_text or time.monotonic()
                        self.text += event.text
                        texts.put_nowait(event.text)
            finally:
                texts.put_nowait(None)

        voice = VoiceOptions(voice=o.tts_voice, sample_rate_hz=OUT_RATE)
        stream = SynthesisStream(o.tts, voice, StreamLimits())
        writer = asyncio.create_task(generate())
        try:
            async for event in stream.run(inputs()):
                if isinstance(event, Chunk) and self.first_synthesized is None:
                    self.first_synthesized = time.monotonic()
            await writer
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)


class InProcess:
    """STT, LLM and TTS backends loaded here, a session's turn logic around them."""

    def __init__(self, args: argparse.Namespace):
        self.args = args

    async def load(self) -> None:
        from voicemesh.backend import BackendCache
        from voicemesh.descriptors import parse
        from voicemesh.registry import Registry
        from voicemesh.speech.turn import turn_detector
        from voicemesh.speech.turn.model import RATE as TURN_RATE
        from voicemesh.speech.turn.model import shared_smart_turn

        self.caches, loaded = [], []
        for modality, descriptor in (("stt", self.args.stt), ("llm", self.args.llm), ("tts", self.args.tts)):
            cache = BackendCache(Registry(modality))  # each backend's settings from VOICEMESH_* variables
            self.caches.append(cache)
            backend = await cache.get(parse(descriptor))
            await backend.warm_up()  # as each service does before it reports SERVING
            loaded.append(backend)
        self.stt, self.llm, self.tts = loaded
        self.stt_language = parse(self.args.stt).variant or "en"
        self.tts_voice = self.tts.check_voice(parse(self.args.tts).variant or "")
        model = shared_smart_turn()
        await model.predict(np.zeros(TURN_RATE, dtype=np.float32))  # as the orchestrator warms it
        self.turns = turn_detector("smart-turn", min_delay_ms=self.args.endpointing_ms, max_delay_ms=MAX_DELAY_MS,
                                   model=model)

    async def close(self) -> None:
        for cache in self.caches:
            await cache.close()

    async def turn(self, question: str, pcm: bytes, history: list, session: object) -> Turn:
        from voicemesh.services.llm.backend import Message
        from voicemesh.services.stt.backend import RecognitionOptions, SpeechEndedEvent, SpeechStartedEvent
        from voicemesh.services.stt.backend import TranscriptEvent
        from voicemesh.speech.turn import Judge
        from voicemesh.speech.turn.model import RecentAudio
        from voicemesh.speech.turn.text import same_words

        turn = Turn("in-process", question, round(len(pcm) / 2 / RATE, 2))
        pacer, recent, done = Pacer(), RecentAudio(RATE), asyncio.Event()
        events: asyncio.Queue = asyncio.Queue()
        received: asyncio.Queue = asyncio.Queue()

        async def client() -> None:
            """The user's audio arrives in real time, whether or not the STT keeps up (as the session gets it
            from its client: the STT reads at its own pace, e.g. not during its final decode)."""
            silence = bytes(2 * RATE * CHUNK_MS // 1000)
            for chunk in chunks(pcm, rate=RATE, ms=CHUNK_MS):
                recent.feed(chunk)
                received.put_nowait(chunk)
                await pacer.tick(len(chunk) / 2 / RATE)
            while not done.is_set() and pacer.sent < len(pcm) / 2 / RATE + 20:
                recent.feed(silence)
                received.put_nowait(silence)
                await pacer.tick(CHUNK_MS / 1000)
            received.put_nowait(None)

        async def audio():
            while (chunk := await received.get()) is not None:
                yield chunk

        async def listen() -> None:
            options = RecognitionOptions(language=self.stt_language, sample_rate_hz=RATE, interim_results=True,
                                         min_silence_ms=self.turns.stt_silence_ms)
            try:
                async for event in self.stt.recognize(options, audio()):
                    events.put_nowait(("stt", event))
            finally:
                events.put_nowait(("end", None))

        def now_ms() -> float:
            return (time.monotonic() - pacer.start) * 1000

        end_wall = pacer.wall(speech_end_s(pcm))
        sender, listener = asyncio.create_task(client()), asyncio.create_task(listen())
        words, final_at, eos, deadline, check, start_ms = "", None, None, None, 0, None
        ahead: tuple[str, HeldReply] | None = None
        early: tuple[float, asyncio.Task] | None = None  # (end of speech, the verdict made at the pause)

        def since() -> float | None:
            return None if start_ms is None else start_ms - PRE_SPEECH_MS

        async def judge_early(end_ms: float, window: float, since_ms: float | None):
            if end_ms + window > now_ms():
                await asyncio.sleep((end_ms + window - now_ms()) / 1000)
            samples = recent.until(min(now_ms(), end_ms + window), since_ms)
            return await self.turns.verdict(samples, Judge(use_model=True, voice_after_ms=0.0))

        try:
            while True:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    kind, event = await asyncio.wait_for(events.get(), timeout)
                except TimeoutError:
                    break  # the end-of-turn wait is over: the turn ends
                if kind == "end":
                    if not words:
                        raise RuntimeError("the STT stream ended without a final transcript")
                    break
                if kind == "stt" and isinstance(event, SpeechStartedEvent):
                    deadline, check = None, check + 1  # the user goes on
                    start_ms = event.time_ms if start_ms is None else start_ms
                    if early is not None:
                        early[1].cancel()
                        early = None
                elif kind == "stt" and isinstance(event, TranscriptEvent) and event.final and event.text.strip():
                    words, final_at = (words + " " + event.text.strip()).strip(), time.monotonic()
                elif kind == "stt" and isinstance(event, TranscriptEvent) and event.text.strip():
                    heard = (words + " " + event.text.strip()).strip()  # an interim, as the session reads it
                    if ahead is not None and not same_words(ahead[0], heard):
                        await ahead[1].cancel()
                        ahead = None
                    window = self.turns.early_window_ms(heard)
                    if event.end_candidate and window is not None and (early is None or early[0] != event.end_ms):
                        if early is not None:
                            early[1].cancel()
                        early = (event.end_ms, asyncio.create_task(judge_early(event.end_ms, window, since())))
                    if (SPECULATE and event.end_candidate and deadline is None and ahead is None
                            and self.turns.may_preempt(heard)):
                        ahead = (heard, HeldReply(self, [*history, Message("user", heard)], session, held=True))
                elif kind == "stt" and isinstance(event, SpeechEndedEvent) and words:
                    end_ms, check = event.time_ms, check + 1
                    eos = pacer.start + end_ms / 1000
                    decision = self.turns.end_of_speech(words, now_ms() - end_ms)
                    if decision.judge is not None:
                        samples = recent.until(now_ms(), since())
                        made = early[1] if early is not None and early[0] == end_ms else None
                        asyncio.create_task(self._judge(events, check, end_ms, samples, decision.judge, made))
                    if decision.wait_ms <= 0:
                        break
                    deadline = time.monotonic() + decision.wait_ms / 1000
                    if self.turns.may_preempt(words) and not (ahead and same_words(ahead[0], words)):
                        if ahead is not None:
                            await ahead[1].cancel()
                        ahead = (words, HeldReply(self, [*history, Message("user", words)], session, held=True))
                elif kind == "verdict" and event[0] == check and deadline is not None:
                    wait = self.turns.target_ms(words, event[2]) - (now_ms() - event[1])
                    if wait <= 0:
                        break
                    deadline = time.monotonic() + wait / 1000
            decided = time.monotonic()
            history.append(Message("user", words))
            if ahead is not None and same_words(ahead[0], words):
                reply = ahead[1]
                reply.release()
            else:
                if ahead is not None:
                    await ahead[1].cancel()
                reply = HeldReply(self, list(history), session, held=False)
            ahead = None
            await reply.task
        finally:
            done.set()
            if early is not None:
                early[1].cancel()
            if ahead is not None:
                await ahead[1].cancel()
            for task in (listener, sender):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        history.append(Message("assistant", reply.text))
        turn.transcript, turn.reply = words, reply.text.strip()
        ms = lambda a, b: max(0.0, (b - a) * 1000) if a is not None and b is not None else 0.0  # noqa: E731
        turn.end_of_turn_ms, turn.stt_final_ms = ms(eos, decided), ms(eos, final_at)
        turn.llm_ttft_ms, turn.tts_ttfb_ms = ms(reply.llm_request, reply.llm_first), ms(reply.tts_first_text,
                                                                                        reply.first_synthesized)
        turn.server_voice_to_voice_ms = ms(eos, reply.first_audio)
        turn.voice_to_voice_ms = ms(end_wall, reply.first_audio)
        turn.models = [self.args.stt, self.args.llm, self.args.tts]
        return turn

    async def _judge(self, events: asyncio.Queue, check: int, end_ms: float, samples, judge, early) -> None:
        if early is not None:  # as the session does: the verdict made at the pause, then only the voice check
            judge = dataclasses.replace(judge, use_model=False, probability=await early)
        probability = await self.turns.verdict(samples, judge)
        events.put_nowait(("verdict", (check, end_ms, probability)))


async def run_in_process_async(groups: list[list[tuple[str, str, bytes]]], args: argparse.Namespace) -> list[Turn]:
    pipeline = InProcess(args)
    await pipeline.load()
    turns: list[Turn] = []
    try:
        for group in groups:
            history: list = []
            session = object()
            for index, (voice, question, pcm) in enumerate(group):
                turn = await pipeline.turn(question, pcm, history, session)
                turn.voice, turn.first = voice, index == 0
                turns.append(turn)
                print_turn(turn)
                await asyncio.sleep(0.5)
    finally:
        await pipeline.close()
    return turns
