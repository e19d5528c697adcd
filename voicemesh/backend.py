"""What every backend shares, whatever its modality.

A backend is a small class registered under a provider name. The servicer of
each modality resolves a descriptor to a backend through ``BackendCache``,
which creates and loads each distinct backend once. Backends never import
grpc: they take plain values and raise ``voicemesh.errors`` exceptions.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from voicemesh.descriptors import Descriptor
from voicemesh.errors import ModelNotFound
from voicemesh.registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteOptions:
    """Connection options of a remote (OpenAI-compatible) backend.

    Empty values fall back to ``VOICEMESH_<PROVIDER>_BASE_URL`` /
    ``VOICEMESH_<PROVIDER>_API_KEY``, then ``OPENAI_BASE_URL`` /
    ``OPENAI_API_KEY`` for the ``openai`` provider.
    """

    base_url: str = ""
    api_key: str = field(default="", repr=False)
    timeout_s: float = 0.0
    extra: Mapping[str, str] = field(default_factory=dict)

    def resolved(self, provider: str, default_base_url: str = "", default_timeout_s: float = 30.0) -> RemoteOptions:
        """Fill empty fields from the environment and defaults."""
        prefix = "VOICEMESH_" + provider.upper().replace(".", "_").replace("-", "_")
        base_url = self.base_url or os.environ.get(prefix + "_BASE_URL", "")
        api_key = self.api_key or os.environ.get(prefix + "_API_KEY", "")
        if provider == "openai":
            base_url = base_url or os.environ.get("OPENAI_BASE_URL", "")
            api_key = api_key or os.environ.get("OPENAI_API_KEY", "")
        return RemoteOptions(
            base_url=(base_url or default_base_url).rstrip("/"),
            api_key=api_key,
            timeout_s=self.timeout_s or default_timeout_s,
            extra=dict(self.extra),
        )

    def cache_key(self) -> tuple:
        """Identity for caching without keeping the key in clear text."""
        key_hash = hashlib.sha256(self.api_key.encode()).hexdigest() if self.api_key else ""
        return (self.base_url, key_hash, self.timeout_s, tuple(sorted(self.extra.items())))


@dataclass(frozen=True)
class ModelCard:
    """What ``Describe`` says of one model; mirrors ``voicemesh.v1.ModelInfo``."""

    descriptor: str
    languages: tuple[str, ...] = ()
    sample_rates_hz: tuple[int, ...] = ()
    voices: tuple[str, ...] = ()
    context_tokens: int = 0
    capabilities: Mapping[str, bool] = field(default_factory=dict)
    description: str = ""


class Backend:
    """Base of every backend.

    Subclasses set ``provider`` and implement their modality's interface.
    ``catalog`` lists what the provider can serve (used by Describe and to
    answer NOT_FOUND); ``load`` does slow set-up off the event loop.
    """

    provider: ClassVar[str] = ""

    def __init__(self, *, model: str, options: RemoteOptions, settings: Any):
        self.model = model
        self.options = options
        self.settings = settings

    @classmethod
    def catalog(cls, settings: Any) -> list[ModelCard]:
        """Models this provider can serve with these settings."""
        return []

    @classmethod
    def check_model(cls, model: str, settings: Any) -> None:
        """Raise NOT_FOUND unless ``model`` is in the catalog (remote providers accept any)."""
        cards = cls.catalog(settings)
        names = {_model_part(card.descriptor) for card in cards}
        if model not in names:
            known = sorted(card.descriptor for card in cards)
            raise ModelNotFound(
                f"unknown {cls.provider} model {model!r}; known models: {', '.join(known) or 'none'}",
                model=f"{cls.provider}/{model}",
                known=known,
            )

    async def load(self) -> None:
        """Load weights or open connections; called once before first use."""

    async def close(self) -> None:
        """Release what ``load`` took."""


def _model_part(descriptor: str) -> str:
    rest = descriptor.partition("/")[2]
    return rest.rpartition(":")[0] if ":" in rest else rest


class BackendCache:
    """Creates, loads and keeps one backend per (provider, model, options)."""

    def __init__(self, registry: Registry, settings: Any):
        self.registry = registry
        self.settings = settings
        self._backends: dict[tuple, Backend] = {}
        self._loading: dict[tuple, asyncio.Task] = {}

    def catalog(self) -> list[ModelCard]:
        """Every model of every registered provider whose engine is installed."""
        cards: list[ModelCard] = []
        for provider in self.registry.providers():
            try:
                cards.extend(self.registry.backend_class(provider).catalog(self.settings))
            except Exception as exc:  # a broken plugin must not hide the others
                log.warning("provider %s cannot list its models: %s", provider, exc)
        return cards

    async def get(self, descriptor: Descriptor, options: RemoteOptions | None = None) -> Backend:
        """The loaded backend for ``descriptor``; raises NOT_FOUND for unknown ones."""
        cls = self.registry.backend_class(descriptor.provider)
        cls.check_model(descriptor.model, self.settings)
        options = options or RemoteOptions()
        key = (descriptor.provider, descriptor.model, options.cache_key())
        backend = self._backends.get(key)
        if backend is not None:
            return backend
        task = self._loading.get(key)
        if task is None:
            task = asyncio.ensure_future(self._create(cls, descriptor, options))
            self._loading[key] = task
        try:
            backend = await asyncio.shield(task)
        finally:
            if task.done():
                self._loading.pop(key, None)
        self._backends[key] = backend
        return backend

    async def _create(self, cls: type, descriptor: Descriptor, options: RemoteOptions) -> Backend:
        backend = cls(model=descriptor.model, options=options, settings=self.settings)
        log.info("loading %s backend for %s/%s", self.registry.modality, descriptor.provider, descriptor.model)
        await backend.load()
        return backend

    async def close(self) -> None:
        """Close every backend."""
        backends, self._backends = list(self._backends.values()), {}
        for backend in backends:
            await backend.close()
