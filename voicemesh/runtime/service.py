"""The service definition every model service (stt, llm, tts, realtime) uses.

It owns the provider registry and the backend cache, preloads the models the
operator names before the service reports SERVING, and builds the Describe
answer from the providers' catalogs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from voicemesh import __version__
from voicemesh.audio import MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ
from voicemesh.backend import (DEFAULT_MAX_REMOTE, Backend, BackendCache, BackendSettings, ModelCard, RemoteOptions,
                               settings_types)
from voicemesh.descriptors import parse
from voicemesh.registry import Registry
from voicemesh.runtime.server import ServerSettings
from voicemesh.settings import add_arguments, from_namespace, setting
from voicemesh.targets import Allowlist
from voicemesh.v1 import common_pb2

log = logging.getLogger(__name__)


@dataclass
class ModelServiceSettings(ServerSettings):
    """Settings of every model service."""

    preload: str = setting("", "comma-separated model descriptors to load before the service reports SERVING")
    allowed_base_urls: str = setting(
        "", "comma-separated base URLs a client may name in BackendOptions.base_url (URL prefixes; ':*' as the port "
        "admits any port); empty: clients use only the operator's VOICEMESH_<PROVIDER>_BASE_URL. The operator's own "
        "API key is never sent to a URL a client named")
    max_remote_backends: int = setting(
        DEFAULT_MAX_REMOTE, "remote backends (one per distinct base_url, key and options) kept open; the least "
        "recently used is closed once no stream uses it")
    # The settings each registered backend declares (Backend.settings_type), filled from the same flags and
    # environment by ``backend_settings``; a type missing here is read from the environment when first used.
    backend_settings: dict[type, BackendSettings] = field(default_factory=dict, metadata={"flag": False})


def add_backend_arguments(parser: argparse.ArgumentParser, modality: str) -> None:
    """Flags (and VOICEMESH_* variables) for every setting the registered backends declare."""
    for kind in settings_types(Registry(modality)):
        add_arguments(parser, kind)


def backend_settings(namespace: argparse.Namespace, modality: str) -> dict[type, BackendSettings]:
    """Each registered backend's settings, from parsed flags (``add_backend_arguments``)."""
    return {kind: from_namespace(kind, namespace) for kind in settings_types(Registry(modality))}


def remote_options(options: common_pb2.BackendOptions | None) -> RemoteOptions:
    """The backend options of a config message as plain values."""
    if options is None:
        return RemoteOptions()
    return RemoteOptions(
        base_url=options.base_url, api_key=options.api_key, timeout_s=options.timeout_s, extra=dict(options.extra)
    )


def model_info(card: ModelCard, loaded: bool = False) -> common_pb2.ModelInfo:
    """A ModelCard as its proto message."""
    descriptor = parse(card.descriptor)
    return common_pb2.ModelInfo(
        descriptor=card.descriptor,
        provider=descriptor.provider,
        model=descriptor.model,
        languages=card.languages,
        sample_rates_hz=card.sample_rates_hz,
        voices=card.voices,
        context_tokens=card.context_tokens,
        capabilities=common_pb2.Capabilities(**card.capabilities),
        description=card.description,
        size_bytes=card.size_bytes,
        loaded=loaded,
    )


class ModelService:
    """A ``ServiceDefinition`` for one modality.

    ``servicer_factory`` builds the servicer from this object (it reads
    ``backends`` and ``description()``); ``add_to_server`` is the generated
    ``add_<Service>Servicer_to_server`` function.
    """

    def __init__(
        self,
        *,
        name: str,
        full_name: str,
        settings: ModelServiceSettings,
        servicer_factory: Callable[[ModelService], Any],
        add_to_server: Callable[[Any, grpc.aio.Server], None],
    ):
        self.name = name
        self.full_names = (full_name,)
        self.settings = settings
        self.registry = Registry(name)
        self.backends = BackendCache(self.registry, settings.backend_settings,
                                     allowlist=Allowlist.parse(settings.allowed_base_urls),
                                     max_remote=settings.max_remote_backends)
        self._add_to_server = add_to_server
        self.servicer = servicer_factory(self)

    def register(self, server: grpc.aio.Server) -> None:
        self._add_to_server(self.servicer, server)

    async def start(self) -> None:
        for text in filter(None, (part.strip() for part in self.settings.preload.split(","))):
            # In a task of its own: the cache counts a model in use while the task that got it runs.
            await asyncio.ensure_future(self._preload(text))
            log.info("preloaded %s", text)

    async def _preload(self, text: str) -> None:
        """Load a model and run it once, before the service reports SERVING: a session's first turn then costs
        what its later ones do."""
        backend = await self.backends.get(parse(text))
        await backend.warm_up()

    async def stop(self) -> None:
        await self.backends.close()

    async def backend(self, descriptor: str, options: common_pb2.BackendOptions | None = None) -> Backend:
        """Resolve a descriptor string to a loaded backend (NOT_FOUND / INVALID_ARGUMENT on bad ones)."""
        return await self.backends.get(parse(descriptor), remote_options(options))

    def description(self) -> common_pb2.ServiceDescription:
        loaded = self.backends.loaded()
        return common_pb2.ServiceDescription(
            service=self.name,
            version=__version__,
            models=[model_info(card, f"{parse(card.descriptor).provider}/{parse(card.descriptor).model}" in loaded)
                    for card in self.backends.catalog()],
            min_sample_rate_hz=MIN_SAMPLE_RATE_HZ,
            max_sample_rate_hz=MAX_SAMPLE_RATE_HZ,
            providers=self.registry.providers(),
        )
