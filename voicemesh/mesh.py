"""Mesh addressing: which service address serves which provider.

A mesh config maps, per modality, a provider name to one or more gRPC
addresses (``host:port``; a DNS name that resolves to several replicas
works too). The provider ``*`` is the default for providers not listed.
Example (JSON)::

    {"stt": {"*": ["127.0.0.1:50061"]},
     "llm": {"llama.cpp": ["127.0.0.1:50062"], "openai": ["127.0.0.1:50072"]},
     "tts": {"*": ["127.0.0.1:50063"]},
     "realtime": {"*": ["127.0.0.1:50064"]},
     "aliases": {"models": {"whisper-1": "faster-whisper/base.en:en"}, "voices": {"alloy": "en_US-amy-medium"}}}

The optional ``aliases`` section is the gateway's name table for OpenAI clients: ``models`` maps an
OpenAI model name to a mesh descriptor, ``voices`` an OpenAI voice name to a voice (a speaker of the
requested model, or a whole TTS descriptor); each entry overrides the gateway's defaults
(voicemesh.gateway.names). It is read from the file named by ``VOICEMESH_MESH`` (or given
explicitly); ``VOICEMESH_MESH_STT`` / ``_LLM`` / ``_TTS`` / ``_REALTIME`` / ``_AVATAR``
(comma-separated addresses) set the ``*`` entry of a modality and win over
the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from voicemesh.errors import InvalidInput, ModelNotFound
from voicemesh.registry import MODALITIES
from voicemesh.settings import environ

DEFAULT_PORTS = {"orchestrator": 50060, "stt": 50061, "llm": 50062, "tts": 50063, "realtime": 50064, "avatar": 50065}


@dataclass
class MeshConfig:
    """Per modality: provider -> addresses."""

    routes: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    aliases: dict[str, dict[str, str]] = field(default_factory=dict)  # "models"/"voices" -> name -> target

    def addresses(self, modality: str, provider: str) -> list[str]:
        """Addresses that serve ``provider`` of ``modality`` (the provider's own, else ``*``)."""
        table = self.routes.get(modality, {})
        found = table.get(provider) or table.get("*")
        if not found:
            known = sorted(p for p in table if p != "*")
            raise ModelNotFound(
                f"no {modality} service address for provider {provider!r} in the mesh config"
                + (f"; configured providers: {', '.join(known)}" if known else ""),
                known=known,
            )
        return list(found)

    def to_json(self) -> str:
        return json.dumps({**self.routes, **({"aliases": self.aliases} if self.aliases else {})}, indent=2,
                          sort_keys=True)

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def from_dict(cls, data: dict) -> MeshConfig:
        routes: dict[str, dict[str, list[str]]] = {}
        if not isinstance(data, dict):
            raise InvalidInput("mesh config must be a JSON object of modality -> provider -> addresses")
        data = dict(data)
        aliases = _aliases(data.pop("aliases", {}))
        for modality, table in data.items():
            if modality not in MODALITIES:
                raise InvalidInput(f"mesh config: unknown modality {modality!r}; known: {', '.join(MODALITIES)}")
            if not isinstance(table, dict):
                raise InvalidInput(f"mesh config: {modality} must map provider names to address lists")
            routes[modality] = {}
            for provider, addresses in table.items():
                if isinstance(addresses, str):
                    addresses = [a.strip() for a in addresses.split(",") if a.strip()]
                if not isinstance(addresses, list) or not all(isinstance(a, str) and a for a in addresses):
                    raise InvalidInput(f"mesh config: {modality}.{provider} must be a list of host:port strings")
                routes[modality][provider] = addresses
        return cls(routes, aliases)

    @classmethod
    def load(cls, path: str | Path | None = None) -> MeshConfig:
        """Read the file (``path`` or ``$VOICEMESH_MESH``), then apply the env overrides."""
        path = path or environ("VOICEMESH_MESH")
        config = cls()
        if path:
            try:
                config = cls.from_dict(json.loads(Path(path).read_text()))
            except (OSError, json.JSONDecodeError) as exc:
                raise InvalidInput(f"cannot read mesh config {path}: {exc}") from exc
        for modality in MODALITIES:
            value = environ(f"VOICEMESH_MESH_{modality.upper()}")
            if value:
                config.routes.setdefault(modality, {})["*"] = [a.strip() for a in value.split(",") if a.strip()]
        return config

    @classmethod
    def local(cls, host: str = "127.0.0.1", ports: dict[str, int] | None = None) -> MeshConfig:
        """The mesh of ``voicemesh up``: every provider of a modality on one local service."""
        ports = {**DEFAULT_PORTS, **(ports or {})}
        return cls({m: {"*": [f"{host}:{ports[m]}"]} for m in MODALITIES if m in ports})


def _aliases(data: object) -> dict[str, dict[str, str]]:
    """The ``aliases`` section: {"models": {name: descriptor}, "voices": {name: voice}}."""
    if not isinstance(data, dict) or not set(data) <= {"models", "voices"}:
        raise InvalidInput('mesh config: aliases must be {"models": {...}, "voices": {...}}')
    for kind, table in data.items():
        if not isinstance(table, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in table.items()):
            raise InvalidInput(f"mesh config: aliases.{kind} must map names to strings")
    return {kind: dict(table) for kind, table in data.items()}
