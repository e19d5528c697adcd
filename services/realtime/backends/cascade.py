"""``voicemesh/cascade``: realtime semantics over the local STT, LLM and TTS backends.

The cascade loads the other services' own backends in this process through
their registries (``--cascade-stt``, ``--cascade-llm``, ``--cascade-tts``;
by default faster-whisper tiny.en, llama.cpp SmolLM2 and piper joe), each
with that service's own settings type, so there is one loader per engine.
A descriptor variant or the session's ``voice`` picks another piper voice.
Each session is a ``CascadeSession``; ``--max-sessions`` bounds them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from voicemesh.backend import BackendCache, ModelCard
from voicemesh.descriptors import parse
from voicemesh.errors import FailedPrecondition, ModelNotFound
from voicemesh.registry import Registry
from voicemesh.services.llm import server as llm_server
from voicemesh.services.llm.backend import LlmBackend, Sampling
from voicemesh.services.realtime import backend as rt
from voicemesh.services.realtime.session import CascadeSession
from voicemesh.services.stt import server as stt_server
from voicemesh.runtime.admission import Admission
from voicemesh.services.stt.backend import SttBackend
from voicemesh.services.tts import server as tts_server
from voicemesh.services.tts.backend import TtsBackend, VoiceOptions

log = logging.getLogger(__name__)

DEFAULT_INSTRUCTIONS = "You are a helpful voice assistant. Answer in one or two short sentences."
CAPABILITIES = {"streaming": True, "interim_results": True, "server_vad": True, "truncate": True,
                "text_only_output": True}


def _get(settings: Any, name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def component_settings(settings: Any) -> dict[str, Any]:
    """The settings each component backend expects, from the realtime service's settings."""
    sessions = int(_get(settings, "max_sessions", 4))
    return {
        "stt": stt_server.Settings(preload="", workers=2, queue=2 * sessions,
                                   threads=int(_get(settings, "stt_threads", 1)), interim_interval_ms=500),
        "llm": llm_server.Settings(preload="", max_generations=sessions,
                                   llama_threads=int(_get(settings, "llm_threads", 1)),
                                   llama_context=int(_get(settings, "llm_context", 2048)),
                                   max_tokens=int(_get(settings, "max_response_tokens", 200)),
                                   temperature=float(_get(settings, "temperature", 0.0))),
        "tts": tts_server.Settings(preload="", piper_threads=int(_get(settings, "tts_threads", 1))),
    }


def _descriptors(settings: Any) -> dict[str, str]:
    return {"stt": _get(settings, "cascade_stt", "faster-whisper/tiny.en:en"),
            "llm": _get(settings, "cascade_llm", "llama.cpp/smollm2-135m-instruct"),
            "tts": _get(settings, "cascade_tts", "piper/en_US-joe-medium")}


class CascadeBackend(rt.RealtimeBackend):
    """One STT, one LLM and the TTS voices, shared by every session of the service."""

    provider = "voicemesh"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._caches: dict[str, BackendCache] = {}
        self.stt: SttBackend | None = None
        self.llm: LlmBackend | None = None
        self.default_voice = ""
        self.admission = Admission(int(_get(self.settings, "max_sessions", 4)), "realtime sessions",
                                   flag="--max-sessions")

    @classmethod
    def catalog(cls, settings: Any) -> list[ModelCard]:
        components = component_settings(settings)
        found: dict[str, list[ModelCard]] = {}
        for modality, descriptor in _descriptors(settings).items():
            provider = parse(descriptor).provider
            try:
                backend_class = Registry(modality).backend_class(provider)
                found[modality] = backend_class.catalog(components[modality])
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
                max_input_seconds=float(_get(self.settings, "max_input_seconds", 120.0)), on_unsent=on_unsent)
            async with contextlib.aclosing(session.run(events)) as server_events:
                async for event in server_events:
                    yield event
        finally:
            ticket.release()
