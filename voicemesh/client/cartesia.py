"""Model objects for Cartesia, served through the mesh's ``cartesia`` TTS backend.

Use them in place of descriptor strings, as LiveKit's plugins are used::

    from voicemesh.client import AgentSession, cartesia

    AgentSession(stt=..., llm=..., tts=cartesia.TTS(model="sonic-2", voice="9626c31c-bec5-4cca-baa8-f8ba9e84c8bc"))

Empty ``base_url``/``api_key`` fall back to the TTS service's environment
(``VOICEMESH_CARTESIA_BASE_URL``, ``VOICEMESH_CARTESIA_API_KEY``, ``CARTESIA_API_KEY``).
"""

from __future__ import annotations

from collections.abc import Mapping

from voicemesh.client.models import Model


def TTS(  # noqa: N802 - named like the model kind, as LiveKit's plugins are
    *, model: str = "sonic-2", voice: str = "", language: str = "", speed: float = 0.0, base_url: str = "",
    api_key: str = "", timeout_s: float = 0.0, extra: Mapping[str, str] | None = None,
) -> Model:
    """A Cartesia model and voice id (``cartesia/<model>:<voice>``); ``language`` defaults to English."""
    options = dict(extra or {})
    if language:
        options["language"] = language
    descriptor = f"cartesia/{model}:{voice}" if voice else f"cartesia/{model}"
    return Model(descriptor, base_url=base_url, api_key=api_key, timeout_s=timeout_s, speed=speed, extra=options)
