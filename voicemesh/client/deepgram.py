"""Model objects for Deepgram, served through the mesh's native ``deepgram`` backends.

Use them in place of descriptor strings::

    from voicemesh.client import AgentSession, deepgram

    AgentSession(stt=deepgram.STT(model="nova-3"), llm=..., tts=...)

An empty ``api_key`` falls back to the STT service's environment
(``VOICEMESH_DEEPGRAM_API_KEY``, then ``DEEPGRAM_API_KEY``); ``base_url``
(``wss://...``, a region or a self-hosted Deepgram) must be one the operator
allows. The key travels to the orchestrator inside the session config; use TLS
beyond loopback.
"""

from __future__ import annotations

from collections.abc import Mapping

from voicemesh.client.models import Model


def STT(  # noqa: N802 - named like the model kind, as LiveKit's plugins are
    *, model: str = "nova-3", language: str = "en", base_url: str = "", api_key: str = "",
    timeout_s: float = 0.0, extra: Mapping[str, str] | None = None,
) -> Model:
    """Deepgram live transcription (``deepgram/<model>:<language>``); ``extra`` adds query parameters."""
    descriptor = f"deepgram/{model}:{language}" if language else f"deepgram/{model}"
    return Model(descriptor, base_url=base_url, api_key=api_key, timeout_s=timeout_s, extra=dict(extra or {}))
