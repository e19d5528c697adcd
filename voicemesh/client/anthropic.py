"""Model objects for Anthropic's Messages API, served through the mesh's ``anthropic`` LLM backend.

Use them in place of descriptor strings, as LiveKit's plugin is used::

    from voicemesh.client import AgentSession, anthropic

    AgentSession(llm=anthropic.LLM(model="claude-haiku-4-5"), stt=..., tts=...)

Empty ``base_url``/``api_key`` fall back to the LLM service's environment
(``VOICEMESH_ANTHROPIC_BASE_URL``, ``VOICEMESH_ANTHROPIC_API_KEY``, ``ANTHROPIC_API_KEY``).
The key travels to the orchestrator inside the session config; use TLS beyond loopback.
"""

from __future__ import annotations

from collections.abc import Mapping

from voicemesh.client.models import Model


def LLM(  # noqa: N802 - named like the model kind, as LiveKit's plugins are
    *, model: str = "claude-haiku-4-5", base_url: str = "", api_key: str = "", timeout_s: float = 0.0,
    extra: Mapping[str, str] | None = None,
) -> Model:
    """A Claude model over the Messages API (``anthropic/<model>``)."""
    return Model(f"anthropic/{model}", base_url=base_url, api_key=api_key, timeout_s=timeout_s,
                 extra=dict(extra or {}))
