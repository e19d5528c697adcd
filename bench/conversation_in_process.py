"""Phase 2 of bench/conversation.py: the STT, LLM and TTS backend classes loaded in this process and
called one after another per turn (no gRPC, no orchestrator)."""

from __future__ import annotations

import argparse
import asyncio
import time

from conversation_turns import INSTRUCTIONS, OUT_RATE, RATE, CHUNK_MS, Pacer, Turn, print_turn, speech_end_s

from voicemesh.audio import chunks


class InProcess:
    """STT, LLM and TTS backends loaded here and chained one after another."""

    def __init__(self, args: argparse.Namespace):
        self.args = args

    async def load(self) -> None:
        from voicemesh.backend import BackendCache
        from voicemesh.descriptors import parse
        from voicemesh.registry import Registry

        self.caches = []
        loaded = []
        for modality, descriptor in (("stt", self.args.stt), ("llm", self.args.llm), ("tts", self.args.tts)):
            cache = BackendCache(Registry(modality))  # each backend's settings from VOICEMESH_* variables
            self.caches.append(cache)
            loaded.append(await cache.get(parse(descriptor)))
        self.stt, self.llm, self.tts = loaded
        self.stt_descriptor = parse(self.args.stt)
        self.tts_descriptor = parse(self.args.tts)

    async def close(self) -> None:
        for cache in self.caches:
            await cache.close()

    async def turn(self, question: str, pcm: bytes, history: list, session: object) -> Turn:
        from voicemesh.services.llm.backend import CancelToken, GenerationRequest, Message, TextDelta
        from voicemesh.services.stt.backend import RecognitionOptions, TranscriptEvent
        from voicemesh.services.tts.backend import VoiceOptions
        from voicemesh.speech.segmenter import Segmenter

        turn = Turn("in-process", question, round(len(pcm) / 2 / RATE, 2))
        heard = asyncio.Event()
        pacer = Pacer()

        async def audio():
            for chunk in chunks(pcm, rate=RATE, ms=CHUNK_MS):
                yield chunk
                await pacer.tick(len(chunk) / 2 / RATE)
            silence = bytes(2 * RATE * CHUNK_MS // 1000)
            while not heard.is_set() and pacer.sent < len(pcm) / 2 / RATE + 10:
                yield silence
                await pacer.tick(CHUNK_MS / 1000)

        options = RecognitionOptions(language=self.stt_descriptor.variant or "en", sample_rate_hz=RATE,
                                     interim_results=True, min_silence_ms=self.args.endpointing_ms)
        end_wall = pacer.wall(speech_end_s(pcm))
        events = self.stt.recognize(options, audio())
        try:
            async for event in events:
                if isinstance(event, TranscriptEvent) and event.final and event.text.strip():
                    turn.transcript = event.text.strip()
                    heard.set()
                    break
        finally:
            await events.aclose()
        t_final = time.monotonic()
        turn.stt_final_ms = (t_final - end_wall) * 1000
        turn.end_of_turn_ms = turn.stt_final_ms  # the STT's own endpointing decides the turn here

        history.append(Message("user", turn.transcript))
        request = GenerationRequest(messages=(Message("system", INSTRUCTIONS), *history))
        segmenter = Segmenter()
        reply, first_audio, first_token = "", None, None
        pending: list[str] = []
        t_llm = time.monotonic()
        async for event in self.llm.generate(request, session=session, cancel=CancelToken()):
            if not isinstance(event, TextDelta):
                continue
            first_token = first_token or time.monotonic()
            reply += event.text
            pending += [s.text for s in segmenter.push(event.text)]
            if first_audio is None and pending:
                first_audio = await self._first_audio(pending.pop(0), VoiceOptions)
        pending += [s.text for s in segmenter.flush()]
        if first_audio is None and pending:
            first_audio = await self._first_audio(pending.pop(0), VoiceOptions)
        for text in pending:  # the rest of the reply, as the mesh speaks it too
            async for _ in self.tts.synthesize(text, self._voice(VoiceOptions)):
                pass
        history.append(Message("assistant", reply))
        turn.reply = reply.strip()
        turn.llm_ttft_ms = ((first_token or t_llm) - t_llm) * 1000
        if first_audio is not None:
            turn.tts_ttfb_ms = (first_audio[1] - first_audio[0]) * 1000
            turn.voice_to_voice_ms = (first_audio[1] - end_wall) * 1000
        turn.server_voice_to_voice_ms = turn.voice_to_voice_ms
        turn.models = [self.args.stt, self.args.llm, self.args.tts]
        return turn

    def _voice(self, voice_options_cls):
        return voice_options_cls(voice=self.tts_descriptor.variant or "", sample_rate_hz=OUT_RATE)

    async def _first_audio(self, text: str, voice_options_cls) -> tuple[float, float]:
        """(request time, first chunk time) of synthesizing ``text``; the rest is synthesized too."""
        sent, first = time.monotonic(), None
        async for _ in self.tts.synthesize(text, self._voice(voice_options_cls)):
            first = first or time.monotonic()
        return sent, first or time.monotonic()


async def run_in_process_async(groups: list[list[tuple[str, bytes]]], args: argparse.Namespace) -> list[Turn]:
    pipeline = InProcess(args)
    await pipeline.load()
    turns: list[Turn] = []
    try:
        warm = await pipeline.turn(*groups[0][0], [], object())  # warm-up, not measured
        warm.mode = "warm-up"
        print_turn(warm)
        for group in groups:
            history: list = []
            session = object()
            for question, pcm in group:
                turn = await pipeline.turn(question, pcm, history, session)
                turns.append(turn)
                print_turn(turn)
                await asyncio.sleep(0.5)
    finally:
        await pipeline.close()
    return turns
