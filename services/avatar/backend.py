"""The interface every avatar backend implements.

A backend draws one avatar. For each stream it opens an ``Animator`` that the
stream calls once per frame, in a worker thread, with the frame's slice of the
agent's audio (or none for an idle frame) and the phoneme TTS said is spoken
there; the animator returns the picture as an RGB array. Pacing, clocks,
``Clear`` and encoding are the stream's job, so a new style only draws.
Backends never import grpc and raise ``voicemesh.errors`` exceptions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from voicemesh.backend import Backend, ModelCard
from voicemesh.errors import ModelNotFound

MIN_SIZE = 16
MAX_SIZE = 2048  # 1080p and 1440p fit; a 4096-pixel face takes seconds to draw its still layers
MIN_FPS = 1
MAX_FPS = 60
AVATAR_CAPABILITIES = {"streaming": True}


@dataclass(frozen=True)
class AvatarCard:
    """What Describe says of one avatar; mirrors ``voicemesh.v1.AvatarInfo``."""

    descriptor: str
    variants: tuple[str, ...] = ()
    sizes: tuple[tuple[int, int], ...] = ((512, 512),)
    default_fps: int = 25
    description: str = ""


@dataclass(frozen=True)
class RenderOptions:
    """How one stream is drawn: the variant (may be empty), frame size, rate and audio rate."""

    variant: str
    width: int
    height: int
    fps: int
    sample_rate_hz: int


@dataclass(frozen=True)
class FrameInput:
    """What one frame shows.

    ``audio`` is float32 mono at the stream's rate covering the frame plus
    ``context`` samples before and after it (zeros past the end of a reply),
    or ``None`` for an idle frame. ``time_s`` is the stream clock, for idle
    motion (blinks, breathing) that must not restart with each reply.
    """

    time_s: float
    audio: np.ndarray | None = None
    context: int = 0
    phoneme: str = ""


@dataclass(frozen=True)
class Picture:
    """One drawn frame: RGB uint8 of shape (height, width, 3) and how open the mouth is (0..1)."""

    rgb: np.ndarray
    mouth_open: float


class Animator(ABC):
    """One stream's face: keeps its own state (smoothing, blink timer); used by one thread at a time."""

    @abstractmethod
    def render(self, frame: FrameInput) -> Picture:
        """Draw one frame."""

    def clear(self) -> None:
        """Barge-in: forget the speech state so the next frame starts from rest."""


class AvatarBackend(Backend):
    """Base of the avatar backends (one instance per provider/avatar, shared by streams)."""

    @classmethod
    def avatars(cls, settings: Any) -> list[AvatarCard]:
        """Avatars this provider can draw."""
        return []

    @classmethod
    def catalog(cls, settings: Any) -> list[ModelCard]:
        return [
            ModelCard(descriptor=card.descriptor, capabilities=AVATAR_CAPABILITIES, description=card.description)
            for card in cls.avatars(settings)
        ]

    def card(self) -> AvatarCard:
        """This backend's avatar."""
        return next(c for c in self.avatars(self.settings) if c.descriptor == f"{self.provider}/{self.model}")

    def check_variant(self, variant: str) -> str:
        """The variant to draw for a descriptor's variant part (the default when empty); NOT_FOUND for others."""
        variants = self.card().variants
        if not variant:
            return variants[0] if variants else ""
        if variant not in variants:
            descriptor = f"{self.provider}/{self.model}"
            raise ModelNotFound(
                f"avatar {descriptor} has no variant {variant!r}; known: {', '.join(variants) or 'none'}",
                model=f"{descriptor}:{variant}",
                known=[f"{descriptor}:{v}" for v in variants],
            )
        return variant

    @abstractmethod
    def open(self, options: RenderOptions) -> Animator:
        """A fresh animator for one stream."""
