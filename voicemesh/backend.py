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
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from voicemesh.descriptors import Descriptor, split
from voicemesh.errors import InvalidInput, ModelNotFound, ResourceExhausted
from voicemesh.registry import Registry
from voicemesh.settings import from_env, setting

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteOptions:
    """Connection options of a remote (OpenAI-compatible) backend, as a client sent them.

    A remote backend resolves them against the operator's URL, key and allowlist
    (``voicemesh.targets.resolve``) before it exists; a local backend takes none.
    """

    base_url: str = ""
    api_key: str = field(default="", repr=False)
    timeout_s: float = 0.0
    extra: Mapping[str, str] = field(default_factory=dict)

    def empty(self) -> bool:
        return not (self.base_url or self.api_key or self.timeout_s or self.extra)

    def cache_key(self) -> tuple:
        """Identity for caching without keeping the key in clear text."""
        key_hash = hashlib.sha256(self.api_key.encode()).hexdigest() if self.api_key else ""
        return (self.base_url, key_hash, self.timeout_s, tuple(sorted(self.extra.items())))


@dataclass(frozen=True)
class BackendSettings:
    """Base of the options a backend declares for the operator.

    A backend names its own dataclass (fields made with ``voicemesh.settings.setting``)
    in ``settings_type``; every service that serves the backend turns each field into a
    flag and a ``VOICEMESH_*`` variable, and the backend gets one filled instance.
    """


@dataclass(frozen=True)
class LocalModelSettings(BackendSettings):
    """What every local backend shares: the user's models folder and the cache's bounds.

    Declared once here; each local backend's settings inherit it, so each setting is one flag and one
    ``VOICEMESH_*`` variable whatever the providers of a service.
    """

    models_dir: str = setting(
        "", "folder of the user's own model files, scanned as well as the installed weights packages: *.gguf "
        "(llama.cpp), CTranslate2 whisper folders (faster-whisper), <voice>.onnx + <voice>.onnx.json (piper); "
        "empty: <state dir>/models ($VOICEMESH_STATE_DIR, else ~/.voicemesh)")
    model_memory_mb: int = setting(
        0, "memory budget (MiB, estimated from the weights' size on disk) of the local models one service keeps "
        "loaded; a model beyond it unloads the least recently used idle one, else is refused with "
        "RESOURCE_EXHAUSTED; 0: no budget")
    model_idle_s: float = setting(
        0.0, "seconds a loaded local model may stay unused before it is unloaded (the next request loads it "
        "again); 0: never")


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
    size_bytes: int = 0  # the weights on disk; a local model's memory estimate


class Backend:
    """Base of every backend.

    Subclasses set ``provider`` and implement their modality's interface.
    ``catalog`` lists what the provider can serve (used by Describe and to
    answer NOT_FOUND); ``load`` does slow set-up off the event loop.
    """

    provider: ClassVar[str] = ""
    # A remote backend (voicemesh.remote.RemoteBackend) takes a client's base_url, api_key, timeout_s and extra.
    uses_remote_options: ClassVar[bool] = False
    # The operator's options of this backend: flags and VOICEMESH_* variables of the services that serve it.
    settings_type: ClassVar[type[BackendSettings]] = BackendSettings

    def __init__(self, *, model: str, options: RemoteOptions, settings: BackendSettings):
        self.model = model
        self.options = options
        self.settings = settings

    @classmethod
    def catalog(cls, settings: BackendSettings) -> list[ModelCard]:
        """Models this provider can serve with these settings."""
        return []

    @classmethod
    def check_model(cls, model: str, settings: BackendSettings) -> None:
        """Raise NOT_FOUND unless ``model`` is in the catalog (remote providers accept any)."""
        cards = cls.catalog(settings)
        names = {split(card.descriptor).model for card in cards}
        if model not in names:
            known = sorted(card.descriptor for card in cards)
            raise ModelNotFound(
                f"unknown {cls.provider} model {model!r}; known models: {', '.join(known) or 'none'}",
                model=f"{cls.provider}/{model}",
                known=known,
            )

    @classmethod
    def accept_options(cls, options: RemoteOptions, settings: BackendSettings, allowlist: Any) -> RemoteOptions:
        """The options a backend is built with; a local backend takes none, so one copy serves every client."""
        if not options.empty():
            named = [name for name in ("base_url", "api_key", "timeout_s") if getattr(options, name)]
            named += [f"extra[{key!r}]" for key in sorted(options.extra)]
            raise InvalidInput(f"{cls.provider} runs locally and takes no backend options, got {', '.join(named)}; "
                               "base_url, api_key, timeout_s and extra apply to remote providers only")
        return options

    @classmethod
    def footprint(cls, model: str, settings: BackendSettings) -> int:
        """Bytes ``model`` is expected to take once loaded (its weights on disk); 0 when unknown."""
        for card in cls.catalog(settings):
            if split(card.descriptor).model == model:
                return card.size_bytes
        return 0

    async def load(self) -> None:
        """Load weights or open connections; called once before first use."""

    async def warm_up(self) -> None:
        """Run the loaded model once on a small input, so its first real request does not pay the runtime's
        first-run costs (allocations, kernel choice, caches); a no-op for remote providers."""

    async def close(self) -> None:
        """Release what ``load`` took."""


DEFAULT_MAX_REMOTE = 16


def settings_types(registry: Registry) -> list[type[BackendSettings]]:
    """The settings types of the backends in ``registry``, each once, in provider order."""
    found: list[type[BackendSettings]] = []
    for provider in registry.providers():
        try:
            kind = registry.backend_class(provider).settings_type
        except Exception as exc:  # a broken plugin must not take the others' settings down
            log.warning("provider %s of %s cannot be loaded: %s", provider, registry.modality, exc)
            continue
        if kind not in found:
            found.append(kind)
    return found


class BackendCache:
    """Creates, loads and keeps backends.

    A local backend exists once per (provider, model): client options never
    load another copy of a model. It loads on first use, counts against the
    memory budget (``model_memory_mb``, estimated from its weights on disk)
    and is unloaded after ``model_idle_s`` without a user; a model beyond the
    budget unloads the least recently used idle one, else is refused. A remote
    backend is keyed by its resolved connection options too and sits in an
    LRU of ``max_remote`` entries; one evicted while a stream uses it is
    closed when the last such stream ends. A backend is in use for as long as
    the task (the RPC) that got it runs.
    """

    def __init__(self, registry: Registry, settings: Mapping[type, BackendSettings] | None = None, *,
                 allowlist: Any = None, max_remote: int = DEFAULT_MAX_REMOTE):
        self.registry = registry
        self.settings = dict(settings or {})  # settings type -> filled settings; missing ones from the environment
        self.allowlist = allowlist
        self.max_remote = max(1, max_remote)
        self._local: dict[tuple, Backend] = {}
        self._remote: OrderedDict[tuple, Backend] = OrderedDict()
        self._loading: dict[tuple, asyncio.Task] = {}
        self._users: dict[Backend, int] = {}
        self._retired: set[Backend] = set()  # evicted while in use: closed when its last user ends
        self._closing: set[asyncio.Task] = set()
        self._sizes: dict[tuple, int] = {}  # local models loaded or loading -> their estimated bytes
        self._last_used: dict[Backend, float] = {}
        self._sweeper: asyncio.Task | None = None

    def catalog(self) -> list[ModelCard]:
        """Every model of every registered provider whose engine is installed."""
        cards: list[ModelCard] = []
        for provider in self.registry.providers():
            try:
                cls = self.registry.backend_class(provider)
                cards.extend(cls.catalog(self.settings_of(cls)))
            except Exception as exc:  # a broken plugin must not hide the others
                log.warning("provider %s cannot list its models: %s", provider, exc)
        return cards

    def loaded(self) -> set[str]:
        """``provider/model`` of every local model loaded now."""
        return {f"{provider}/{model}" for provider, model in self._local}

    async def get(self, descriptor: Descriptor, options: RemoteOptions | None = None) -> Backend:
        """The loaded backend for ``descriptor``.

        NOT_FOUND for unknown models, INVALID_ARGUMENT for options the backend
        does not take, PERMISSION_DENIED for a base_url the operator did not allow,
        RESOURCE_EXHAUSTED for a local model the memory budget cannot take now.
        """
        cls = self.registry.backend_class(descriptor.provider)
        settings = self.settings_of(cls)
        cls.check_model(descriptor.model, settings)
        options = cls.accept_options(options or RemoteOptions(), settings, self.allowlist)
        remote = cls.uses_remote_options
        key = (descriptor.provider, descriptor.model, options.cache_key()) if remote else (
            descriptor.provider, descriptor.model)
        table = self._remote if remote else self._local
        backend = table.get(key)
        if backend is None and not remote and key not in self._loading:
            await self._make_room(key, cls, settings)
            backend = table.get(key)  # another request may have loaded it meanwhile
        if backend is None:
            task = self._loading.get(key)
            if task is None:
                task = asyncio.ensure_future(self._create(cls, descriptor, options))
                self._loading[key] = task
            try:
                backend = await asyncio.shield(task)
            except BaseException:
                if task.done():
                    self._sizes.pop(key, None)  # a failed load holds no budget
                raise
            finally:
                if task.done():
                    self._loading.pop(key, None)
            table[key] = backend
        if remote:
            self._remote.move_to_end(key)
            self._hold(backend)
            self._evict()
        else:
            self._hold(backend)
            self._start_sweeper(settings)
        return backend

    def settings_of(self, cls: type[Backend]) -> BackendSettings:
        """The settings ``cls`` declares, as the service was given them (else from the environment)."""
        found = self.settings.get(cls.settings_type)
        if found is None:
            found = self.settings[cls.settings_type] = from_env(cls.settings_type)
        return found

    def _hold(self, backend: Backend) -> None:
        self._last_used[backend] = time.monotonic()
        task = asyncio.current_task()
        if task is None:
            return
        self._users[backend] = self._users.get(backend, 0) + 1
        task.add_done_callback(lambda _: self._release(backend))

    def _release(self, backend: Backend) -> None:
        if backend in self._last_used:
            self._last_used[backend] = time.monotonic()
        left = self._users.get(backend, 0) - 1
        if left > 0:
            self._users[backend] = left
            return
        self._users.pop(backend, None)
        if backend in self._retired:
            self._retired.discard(backend)
            self._close_soon(backend)

    def _evict(self) -> None:
        while len(self._remote) > self.max_remote:
            _, oldest = self._remote.popitem(last=False)
            if self._users.get(oldest):
                self._retired.add(oldest)
            else:
                self._close_soon(oldest)

    def _close_soon(self, backend: Backend) -> None:
        task = asyncio.get_running_loop().create_task(backend.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _create(self, cls: type, descriptor: Descriptor, options: RemoteOptions) -> Backend:
        backend = cls(model=descriptor.model, options=options, settings=self.settings_of(cls))
        log.info("loading %s backend for %s/%s", self.registry.modality, descriptor.provider, descriptor.model)
        await backend.load()
        return backend

    async def _make_room(self, key: tuple, cls: type[Backend], settings: BackendSettings) -> None:
        """Reserve the budget for a local model, unloading idle ones (least recently used first)."""
        size = await asyncio.to_thread(cls.footprint, key[1], settings)
        budget = getattr(settings, "model_memory_mb", 0) * 2**20
        if budget > 0:
            name = f"{key[0]}/{key[1]}"
            if size > budget:
                raise ResourceExhausted(f"{name} needs about {size / 2**20:.0f} MiB, more than the whole memory "
                                        f"budget of {budget / 2**20:.0f} MiB (--model-memory-mb)")
            while sum(v for k, v in self._sizes.items() if k != key) + size > budget:
                idle = [(self._last_used.get(b, 0.0), k) for k, b in self._local.items() if not self._users.get(b)]
                if not idle:
                    busy = ", ".join(f"{p}/{m}" for p, m in self._sizes) or "none"
                    raise ResourceExhausted(
                        f"{name} needs about {size / 2**20:.0f} MiB but the memory budget of {budget / 2**20:.0f} "
                        f"MiB (--model-memory-mb) is taken by models in use ({busy}); retry when one is idle")
                _, oldest = min(idle)
                log.info("unloading %s/%s to make room for %s", oldest[0], oldest[1], name)
                await self._unload(oldest)
        self._sizes[key] = size

    async def _unload(self, key: tuple) -> None:
        backend = self._local.pop(key, None)
        self._sizes.pop(key, None)
        if backend is not None:
            self._last_used.pop(backend, None)
            await backend.close()

    def _start_sweeper(self, settings: BackendSettings) -> None:
        if self._sweeper is None and getattr(settings, "model_idle_s", 0) > 0:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        """Unload local models unused for longer than their provider's ``model_idle_s``."""
        while True:
            ttls = {key: getattr(self.settings_of(type(b)), "model_idle_s", 0) for key, b in self._local.items()}
            waits = [ttl for ttl in ttls.values() if ttl > 0]
            await asyncio.sleep(max(0.05, min(waits, default=4.0) / 4))
            now = time.monotonic()
            for key, ttl in ttls.items():
                backend = self._local.get(key)
                if (backend is not None and ttl > 0 and not self._users.get(backend)
                        and now - self._last_used.get(backend, now) >= ttl):
                    log.info("unloading %s/%s: idle for %.1f s", key[0], key[1], ttl)
                    await self._unload(key)

    def remote_count(self) -> int:
        """Remote backends open now (cached, or evicted and still in use)."""
        return len(self._remote) + len(self._retired)

    async def close(self) -> None:
        """Close every backend."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        backends = [*self._local.values(), *self._remote.values(), *self._retired]
        self._local, self._remote, self._retired = {}, OrderedDict(), set()
        for backend in backends:
            await backend.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
