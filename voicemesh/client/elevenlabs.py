"""Model objects for ElevenLabs, served through the mesh's ``elevenlabs`` TTS backend.

Use them in place of descriptor strings, as LiveKit's plugins are used::

    from voicemesh.client import AgentSession, elevenlabs

    AgentSession(stt=..., llm=..., tts=elevenlabs.TTS(model="eleven_flash_v2_5", voice="21m00Tcm4TlvDq8ikWAM"))

Empty ``base_url``/``api_key`` fall back to the TTS service's environment
(``VOICEMESH_ELEVENLABS_BASE_URL``, ``VOICEMESH_ELEVENLABS_API_KEY``, ``ELEVEN_API_KEY``).
"""

from __future__ import annotations

from collections.abc import Mapping

from voicemesh.client.models import Model


def TTS(  # noqa: N802 - named like the model kind, as LiveKit's plugins are
    *, model: str = "eleven_flash_v2_5", voice: str = "", speed: float = 0.0, base_url: str = "", api_key: str = "",
    timeout_s: float = 0.0, extra: Mapping[str, str] | None = None,
) -> Model:
    """An ElevenLabs model and voice id (``elevenlabs/<model>:<voice>``)."""
    descriptor = f"elevenlabs/{model}:{voice}" if voice else f"elevenlabs/{model}"
    return Model(descriptor, base_url=base_url, api_key=api_key, timeout_s=timeout_s, speed=speed,
                 extra=dict(extra or {}))
