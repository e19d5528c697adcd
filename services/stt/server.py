"""Speech to text: streaming recognition (faster-whisper locally, or any OpenAI-compatible API).

Serves voicemesh.v1.SttService: Recognize (config, then PCM audio; events
SPEECH_STARTED, INTERIM, FINAL, SPEECH_ENDED, USAGE) and Describe.
"""

from __future__ import annotations

from dataclasses import dataclass

from voicemesh.mesh import DEFAULT_PORTS
from voicemesh.runtime.service import ModelService, ModelServiceSettings
from voicemesh.services.stt.servicer import SttServicer
from voicemesh.settings import setting
from voicemesh.v1 import stt_pb2, stt_pb2_grpc


@dataclass
class Settings(ModelServiceSettings):
    """Settings of the stt service."""

    port: int = setting(DEFAULT_PORTS["stt"], "gRPC port (0 picks a free one and logs it)")
    preload: str = setting("faster-whisper/tiny.en:en",
                           "comma-separated model descriptors to load before the service reports SERVING")
    # The backends declare their own settings (FasterWhisperSettings, RemoteSettings): see voicemesh serve stt --help.


def create(settings: Settings) -> ModelService:
    """The stt service definition."""
    return ModelService(
        name="stt",
        full_name=stt_pb2.DESCRIPTOR.services_by_name["SttService"].full_name,
        settings=settings,
        servicer_factory=SttServicer,
        add_to_server=stt_pb2_grpc.add_SttServiceServicer_to_server,
    )
