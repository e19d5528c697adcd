"""Model objects for AssemblyAI, served through the mesh's native ``assemblyai`` backend.

Use them in place of descriptor strings::

    from voicemesh.client import AgentSession, assemblyai

    AgentSession(stt=assemblyai.STT(language="en"), llm=..., tts=...)

An empty ``api_key`` falls back to the STT service's environment
(``VOICEMESH_ASSEMBLYAI_API_KEY``, then ``ASSEMBLYAI_API_KEY``); ``base_url``
(``wss://streaming.eu.assemblyai.com`` and the like) must be one the operator
allows. The key travels to the orchestrator inside the session config; use TLS
beyond loopback.
"""

from __future__ import annotations

from collections.abc import Mapping

from voicemesh.client.models import Model


def STT(  # noqa: N802 - named like the model kind, as LiveKit's plugins are
    *, model: str = "universal-streaming", language: str = "en", base_url: str = "", api_key: str = "",
    timeout_s: float = 0.0, extra: Mapping[str, str] | None = None,
) -> Model:
    """AssemblyAI streaming STT (``assemblyai/<model>:<language>``); ``extra`` adds query parameters."""
    descriptor = f"assemblyai/{model}:{language}" if language else f"assemblyai/{model}"
    return Model(descriptor, base_url=base_url, api_key=api_key, timeout_s=timeout_s, extra=dict(extra or {}))
