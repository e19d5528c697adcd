"""Gemini Live models, served through the realtime service's ``google`` backend.

Empty ``base_url``/``api_key`` fall back to the realtime service's environment
(``VOICEMESH_GOOGLE_BASE_URL``, ``VOICEMESH_GOOGLE_API_KEY``, ``GOOGLE_API_KEY``, ``GEMINI_API_KEY``).
The key travels to the orchestrator inside the session config; use TLS beyond loopback.
"""

from __future__ import annotations

from collections.abc import Mapping

from voicemesh.client.models import Model


def RealtimeModel(  # noqa: N802 - named like LiveKit's google.realtime.RealtimeModel
    *, model: str = "gemini-live-2.5-flash-preview", voice: str = "", base_url: str = "", api_key: str = "",
    timeout_s: float = 0.0, extra: Mapping[str, str] | None = None,
) -> Model:
    """A Gemini Live model (``google/<model>``, or ``google/<model>:<voice>`` with a prebuilt voice such as Puck)."""
    descriptor = f"google/{model}:{voice}" if voice else f"google/{model}"
    return Model(descriptor, base_url=base_url, api_key=api_key, timeout_s=timeout_s, extra=dict(extra or {}))
