"""Provider registry: entry points map a provider name to a backend class.

Each modality has its own entry-point group (``voicemesh.stt``,
``voicemesh.llm``, ``voicemesh.tts``, ``voicemesh.realtime``,
``voicemesh.avatar``). A third-party
package adds a provider by declaring an entry point in one of them, for
example in its ``pyproject.toml``::

    [project.entry-points."voicemesh.tts"]
    myvoice = "my_package.tts:MyVoiceBackend"
"""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points

from voicemesh.errors import InvalidInput, ModelNotFound

log = logging.getLogger(__name__)

MODALITIES = ("stt", "llm", "tts", "realtime", "avatar")


def group(modality: str) -> str:
    """The entry-point group of a modality."""
    if modality not in MODALITIES:
        raise InvalidInput(f"unknown modality {modality!r}; known: {', '.join(MODALITIES)}")
    return f"voicemesh.{modality}"


class Registry:
    """Providers of one modality, read from entry points when created."""

    def __init__(self, modality: str):
        self.modality = modality
        self._entry_points: dict[str, EntryPoint] = {}
        for ep in entry_points(group=group(modality)):
            if ep.name in self._entry_points:
                log.warning("provider %r of %s is declared twice; keeping %s", ep.name, modality, ep.value)
                continue
            self._entry_points[ep.name] = ep
        self._classes: dict[str, type] = {}

    def providers(self) -> list[str]:
        """Names of the registered providers, sorted."""
        return sorted(self._entry_points)

    def backend_class(self, provider: str) -> type:
        """The backend class of ``provider``; NOT_FOUND naming the known ones."""
        cls = self._classes.get(provider)
        if cls is not None:
            return cls
        ep = self._entry_points.get(provider)
        if ep is None:
            known = self.providers()
            raise ModelNotFound(
                f"unknown {self.modality} provider {provider!r}; known providers: {', '.join(known) or 'none'}",
                known=known,
            )
        cls = ep.load()
        self._classes[provider] = cls
        return cls
