"""``voicemesh/cascade``: realtime semantics over the local STT, LLM and TTS backends.

The cascade loads the other services' own backends in this process through
their registries (``--cascade-stt``, ``--cascade-llm``, ``--cascade-tts``;
by default faster-whisper tiny.en, llama.cpp SmolLM2 and piper joe), each
with the settings type each component backend declares, so there is one loader per engine.
A descriptor variant or the session's ``voice`` picks another piper voice.
Each session is a ``CascadeSession``; ``--max-sessions`` bounds them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from voicemesh.backend import BackendCache, BackendSettings, LocalModelSettings, ModelCard, settings_types
from voicemesh.descriptors import parse
from voicemesh.errors import FailedPrecondition, ModelNotFound
from voicemesh.registry import Registry
from voicemesh.services.llm.backend import LlmBackend, Sampling
from voicemesh.services.realtime import backend as rt
from voicemesh.services.realtime.session import CascadeSession
from voicemesh.runtime.admission import Admission
from voicemesh.services.stt.backend import SttBackend
from voicemesh.services.tts.backend import TtsBackend, VoiceOptions
from voicemesh.settings import setting

log = logging.getLogger(__name__)

DEFAULT_INSTRUCTIONS = "You are a helpful voice assistant. Answer in one or two short sentences."
CAPABILITIES = {"streaming": True, "interim_results": True, "server_vad": True, "truncate": True,
                "text_only_output": True}


@dataclass(frozen=True)
class CascadeSettings(LocalModelSettings):
    """The operator's settings of the local cascade: its three models, their engines' sizes and the models folder."""

    cascade_stt: str = setting("faster-whisper/tiny.en:en", "speech-to-text model of the local cascade")
    cascade_llm: str = setting("llama.cpp/smollm2-135m-instruct", "language model of the local cascade")
    cascade_tts: str = setting("piper/en_US-joe-medium", "default voice (text-to-speech model) of the local cascade")
    max_sessions: int = setting(4, "cascade sessions open at once (one llama.cpp context each); more are refused "
                                "with RESOURCE_EXHAUSTED")
    stt_threads: int = setting(1, "CPU threads of the cascade's speech recognition")
    llm_threads: int = setting(1, "CPU threads of the cascade's llama.cpp generation "
                               "(more threads slow it down badly when the cores are shared)")
    llm_context: int = setting(2048, "context window of the cascade's llama.cpp model, in tokens")
    tts_threads: int = setting(1, "CPU threads of the cascade's piper synthesis")
    max_response_tokens: int = setting(200, "tokens a cascade response generates at most")
    temperature: float = setting(0.0, "sampling temperature of cascade responses (0 = greedy)")
    max_input_seconds: float = setting(120.0, "uncommitted input audio kept at most (s) without server VAD")

    def __post_init__(self) -> None:
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {self.max_sessions}")


def component_settings(settings: CascadeSettings) -> dict[str, dict[type, BackendSettings]]:
    """Per modality, the settings of each component backend type: their defaults, sized for the cascade."""
    sized = {
        "stt": {"workers": 2, "queue": 2 * settings.max_sessions, "threads": settings.stt_threads,
                "interim_interval_ms": 500},
        "llm": {"max_generations": settings.max_sessions, "llama_threads": settings.llm_threads,
                "llama_context": settings.llm_context, "max_tokens": settings.max_response_tokens,
                "temperature": settings.temperature},
        "tts": {"piper_threads": settings.tts_threads},
    }
    for values in sized.values():  # the cascade's models may be the user's own files too
        values["models_dir"] = settings.models_dir
    found: dict[str, dict[type, BackendSettings]] = {}
    for modality, values in sized.items():
        found[modality] = {}
        for kind in settings_types(Registry(modality)):
            names = {f.name for f in dataclasses.fields(kind)}
            found[modality][kind] = kind(**{name: value for name, value in values.items() if name in names})
    return found


def _descriptors(settings: CascadeSettings) -> dict[str, str]:
    return {"stt": settings.cascade_stt, "llm": settings.cascade_llm, "tts": settings.cascade_tts}


class CascadeBackend(rt.RealtimeBackend):
    """One STT, one LLM and the TTS voices, shared by every session of the service."""

    provider = "voicemesh"
    settings_type = CascadeSettings
    settings: CascadeSettings

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._caches: dict[str, BackendCache] = {}
        self.stt: SttBackend | None = None
        self.llm: LlmBackend | None = None
        self.default_voice = ""
        self.admission = Admission(self.settings.max_sessions, "realtime sessions", flag="--max-sessions")

    @classmethod
    def catalog(cls, settings: CascadeSettings) -> list[ModelCard]:
        components = component_settings(settings)
        found: dict[str, list[ModelCard]] = {}
        for modality, descriptor in _descriptors(settings).items():
            provider = parse(descriptor).provider
            try:
                backend_class = Registry(modality).backend_class(provider)
                found[modality] = backend_class.catalog(components[modality][backend_class.settings_type])
            except Exception as exc:  # a component that is not installed: the cascade is not offered
                log.info("voicemesh/cascade unavailable: %s provider %s: %s", modality, provider, exc)
                return []
        if not all(found.values()):
            return []
        voices = tuple(parse(card.descriptor).model for card in found["tts"])
        parts = ", ".join(_descriptors(settings).values())
        rates = tuple(sorted({*(r for c in found["stt"] for r in c.sample_rates_hz),
                              *(r for c in found["tts"] for r in c.sample_rates_hz)}))
        return [ModelCard(descriptor=f"{cls.provider}/cascade", languages=("en",), voices=voices, sample_rates_hz=rates,
                          capabilities=CAPABILITIES,
                          description=f"local cascade in one process: {parts}; server VAD from the STT side's "
                          "Silero endpointing")]

    async def load(self) -> None:
        components = component_settings(self.settings)
        self._caches = {m: BackendCache(Registry(m), components[m]) for m in components}
        descriptors = _descriptors(self.settings)
        self.stt = await self._caches["stt"].get(parse(descriptors["stt"]))
        self.language = parse(descriptors["stt"]).variant or (self.stt.languages or ("en",))[0]
        self.llm = await self._caches["llm"].get(parse(descriptors["llm"]))
        self.default_voice = descriptors["tts"]
        tts = await self.tts_for("")
        async with contextlib.aclosing(tts.synthesize("Hello.", VoiceOptions())) as audio:
            async for _ in audio:  # the first synthesis pays the engine's warm-up: not the first user
                pass
        if not isinstance(self.stt, SttBackend) or not isinstance(self.llm, LlmBackend):
            raise FailedPrecondition(f"the cascade needs an STT and an LLM backend, got {descriptors}")
        log.info("voicemesh/cascade ready: %s", ", ".join(descriptors.values()))

    async def tts_for(self, voice: str) -> TtsBackend:
        """The TTS backend of a voice name (a piper voice), or of the default voice."""
        default = parse(self.default_voice)
        descriptor = parse(f"{default.provider}/{voice}") if voice else default
        try:
            backend = await self._caches["tts"].get(descriptor)
        except ModelNotFound as exc:
            raise ModelNotFound(f"unknown voice {voice!r} for voicemesh/cascade; known voices: "
                                f"{', '.join(parse(k).model for k in exc.known) or 'none'}",
                                model="voicemesh/cascade", known=[parse(k).model for k in exc.known]) from None
        if not isinstance(backend, TtsBackend):
            raise FailedPrecondition(f"{descriptor} is not a text-to-speech model")
        return backend

    async def close(self) -> None:
        for cache in self._caches.values():
            await cache.close()
        self._caches = {}

    async def converse(self, options: rt.SessionOptions, events: AsyncIterator[rt.ClientEvent], *,
                       on_unsent: Callable[[rt.Usage], None] = lambda usage: None) -> AsyncIterator[rt.ServerEvent]:
        ticket = self.admission.acquire()
        try:
            if not options.instructions:
                options = rt.SessionOptions(**{**options.__dict__, "instructions": DEFAULT_INSTRUCTIONS})
            session = CascadeSession(
                stt=self.stt, language=self.language, llm=self.llm, voice=self.tts_for, options=options,
                sampling=Sampling(), model=f"{self.provider}/{self.model}",
                max_input_seconds=self.settings.max_input_seconds, on_unsent=on_unsent)
            async with contextlib.aclosing(session.run(events)) as server_events:
                async for event in server_events:
                    yield event
        finally:
            ticket.release()
