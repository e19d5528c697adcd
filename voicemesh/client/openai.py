"""Model objects for OpenAI-compatible APIs, served through the mesh's ``openai`` backends.

Use them in place of descriptor strings::

    from voicemesh.client import AgentSession, openai

    AgentSession(llm=openai.LLM(model="gpt-4.1-mini", base_url="http://127.0.0.1:8080/v1", api_key="sk-..."))

Empty ``base_url``/``api_key`` fall back to the service's environment
(``VOICEMESH_OPENAI_BASE_URL``, ``OPENAI_API_KEY``, ...). The key travels to
the orchestrator inside the session config; use TLS beyond loopback.
"""

from __future__ import annotations

from collections.abc import Mapping

from voicemesh.client.models import Model


def LLM(  # noqa: N802 - named like the model kind, as LiveKit's plugins are
    *, model: str = "gpt-4.1-mini", base_url: str = "", api_key: str = "", timeout_s: float = 0.0,
    extra: Mapping[str, str] | None = None,
) -> Model:
    """A chat model of an OpenAI-compatible API (``openai/<model>``)."""
    return Model(f"openai/{model}", base_url=base_url, api_key=api_key, timeout_s=timeout_s, extra=dict(extra or {}))


def STT(  # noqa: N802
    *, model: str = "whisper-1", language: str = "en", base_url: str = "", api_key: str = "",
    timeout_s: float = 0.0, extra: Mapping[str, str] | None = None,
) -> Model:
    """A transcription model of an OpenAI-compatible API (``openai/<model>:<language>``)."""
    descriptor = f"openai/{model}:{language}" if language else f"openai/{model}"
    return Model(descriptor, base_url=base_url, api_key=api_key, timeout_s=timeout_s, extra=dict(extra or {}))


def TTS(  # noqa: N802
    *, model: str = "tts-1", voice: str = "alloy", speed: float = 0.0, base_url: str = "", api_key: str = "",
    timeout_s: float = 0.0, extra: Mapping[str, str] | None = None,
) -> Model:
    """A speech model and voice of an OpenAI-compatible API (``openai/<model>:<voice>``)."""
    descriptor = f"openai/{model}:{voice}" if voice else f"openai/{model}"
    return Model(descriptor, base_url=base_url, api_key=api_key, timeout_s=timeout_s, speed=speed,
                 extra=dict(extra or {}))
