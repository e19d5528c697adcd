"""Realtime speech to speech with OpenAI Realtime event semantics (a local STT→LLM→TTS cascade, or OpenAI Realtime).

Serves voicemesh.v1.RealtimeService: Converse (a session update naming the
model first, then input audio, commits, items, response create/cancel and
truncate; events: speech started/stopped, input transcription, response
text/audio/transcript deltas, response done with usage, truncation, errors)
and Describe. Models: voicemesh/cascade (faster-whisper, llama.cpp and piper
in this process) and openai/<realtime-model> over the OpenAI Realtime
WebSocket protocol (base_url and api_key from VOICEMESH_OPENAI_* / OPENAI_*
environment variables; a session may bring its own key, and a base_url on
--allowed-base-urls).
"""

from __future__ import annotations

from dataclasses import dataclass

from voicemesh.mesh import DEFAULT_PORTS
from voicemesh.runtime.service import ModelService, ModelServiceSettings
from voicemesh.services.realtime.servicer import RealtimeServicer
from voicemesh.settings import setting
from voicemesh.v1 import realtime_pb2, realtime_pb2_grpc


@dataclass
class Settings(ModelServiceSettings):
    """Settings of the realtime service."""

    port: int = setting(DEFAULT_PORTS["realtime"], "gRPC port (0 picks a free one and logs it)")
    preload: str = setting("voicemesh/cascade",
                           "comma-separated model descriptors to load before the service reports SERVING")
    # The backends declare their own settings (CascadeSettings, RemoteSettings): see voicemesh serve realtime --help.


def create(settings: Settings) -> ModelService:
    """The realtime service definition for ``voicemesh serve realtime``."""
    return ModelService(
        name="realtime",
        full_name=realtime_pb2.DESCRIPTOR.services_by_name["RealtimeService"].full_name,
        settings=settings,
        servicer_factory=RealtimeServicer,
        add_to_server=realtime_pb2_grpc.add_RealtimeServiceServicer_to_server,
    )
