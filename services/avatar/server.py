"""Avatars: the agent's voice in, lip-synced video out (procedural faces drawn on the CPU).

Serves voicemesh.v1.AvatarService. Avatars: local/ada[:day|night] (a 2D face)
and orb/pulse (an audio-reactive orb), and any provider a plugin registers
in the voicemesh.avatar entry-point group.
"""

from __future__ import annotations

from dataclasses import dataclass

from voicemesh.runtime.service import ModelService, ModelServiceSettings
from voicemesh.services.avatar.servicer import AvatarServicer
from voicemesh.settings import setting
from voicemesh.v1 import avatar_pb2_grpc


@dataclass
class Settings(ModelServiceSettings):
    """Settings of the avatar service."""

    port: int = setting(50065, "gRPC port (0 picks a free one and logs it)")
    max_pending_s: float = setting(120.0, "most agent audio a stream may hold that is not shown yet, in seconds")
    max_gap_s: float = setting(10.0, "longest jump forward in audio offsets within a reply (rendered as silence)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_pending_s <= 0 or self.max_gap_s < 0:
            raise ValueError("max_pending_s must be positive and max_gap_s not negative")


def create(settings: Settings) -> ModelService:
    """The avatar service definition for ``voicemesh serve avatar``."""
    return ModelService(
        name="avatar",
        full_name="voicemesh.v1.AvatarService",
        settings=settings,
        servicer_factory=AvatarServicer,
        add_to_server=avatar_pb2_grpc.add_AvatarServiceServicer_to_server,
    )
