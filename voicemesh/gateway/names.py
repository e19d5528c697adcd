"""The names OpenAI clients send, mapped to the mesh's: model aliases and voice names.

A client that knows only OpenAI asks for ``whisper-1`` or ``tts-1`` with ``voice="alloy"``.
``Names`` turns such a model name into a mesh descriptor (the mesh config's ``aliases.models``
first, then ``DEFAULT_MODELS``, the models of the local mesh) and such a voice into the voice of
the requested model (``aliases.voices`` first; an OpenAI voice with no entry speaks in the model's
own default voice). Descriptors (names with a ``/``) pass through unchanged.
"""

from __future__ import annotations

import re

from voicemesh.descriptors import parse
from voicemesh.errors import ModelNotFound
from voicemesh.mesh import MeshConfig

LOCAL_STT = "faster-whisper/tiny.en:en"
LOCAL_LLM = "llama.cpp/smollm2-135m-instruct"
LOCAL_TTS = "piper/en_US-joe-medium"
LOCAL_REALTIME = "voicemesh/cascade"

# OpenAI model name -> (modality, descriptor on the local mesh of `voicemesh up`)
DEFAULT_MODELS = {
    **{name: ("stt", LOCAL_STT) for name in ("whisper-1", "gpt-transcribe", "gpt-4o-transcribe",
                                            "gpt-4o-mini-transcribe")},
    **{name: ("tts", LOCAL_TTS) for name in ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")},
    **{name: ("llm", LOCAL_LLM) for name in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano",
                                            "gpt-4-turbo", "gpt-3.5-turbo")},
    **{name: ("realtime", LOCAL_REALTIME) for name in ("gpt-realtime", "gpt-realtime-mini", "gpt-4o-realtime-preview",
                                                      "gpt-4o-mini-realtime-preview")},
}
# The voices OpenAI's speech and realtime APIs offer. With no alias, each speaks in the model's own voice.
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
                 "marin", "cedar")
# Providers whose models answer only when their service has a remote endpoint and key: /v1/models lists
# them only when the mesh config routes the provider by name (a "*" route alone does not say so).
REMOTE_PROVIDERS = ("openai",)
_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$")  # "gpt-4o-mini-transcribe-2025-03-20" -> its undated name


class Names:
    """Model and voice names of OpenAI clients, resolved against the mesh config's alias table."""

    def __init__(self, mesh: MeshConfig):
        self.mesh = mesh
        self.models = {name: descriptor for name, (_, descriptor) in DEFAULT_MODELS.items()}
        self.models.update(mesh.aliases.get("models", {}))
        self.voices = {name: "" for name in OPENAI_VOICES}
        self.voices.update(mesh.aliases.get("voices", {}))

    def model(self, name: str) -> str:
        """The descriptor for ``name``: a descriptor itself, or an alias; ``ModelNotFound`` otherwise."""
        if "/" in name:
            return name
        found = self.models.get(name) or self.models.get(_DATED.sub("", name))
        if found is None:
            raise ModelNotFound(f"The model '{name}' does not exist: name a mesh descriptor (provider/model, "
                                f"see GET /v1/models) or one of the aliases {', '.join(sorted(self.models))}")
        return found

    def voice(self, descriptor: str, voice: str) -> str:
        """The TTS descriptor that speaks ``descriptor`` (a resolved model) in ``voice``."""
        if not voice:
            return descriptor
        target = self.voices.get(voice, voice)
        if "/" in target:
            return target  # the alias names a whole TTS descriptor
        if not target or parse(descriptor).variant:
            return descriptor  # the model's own voice, or the one its descriptor already names
        return f"{descriptor}:{target}"

    def aliases_of(self, descriptor: str) -> list[str]:
        """The alias names that resolve to ``descriptor`` (same provider and model)."""
        wanted = parse(descriptor)
        return sorted(name for name, target in self.models.items()
                      if (parse(target).provider, parse(target).model) == (wanted.provider, wanted.model))

    def listable(self, modality: str, provider: str) -> bool:
        """Whether /v1/models lists ``provider``'s models: a remote provider only when routed by name."""
        return provider not in REMOTE_PROVIDERS or provider in self.mesh.routes.get(modality, {})
