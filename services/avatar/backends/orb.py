"""``orb/pulse``: a second face style, an audio-reactive orb (the look of many voice assistants).

It exists to show the plugin interface: a style is one ``AvatarBackend`` with
an ``Animator`` that draws a frame from a ``FrameInput``; the stream does the
rest. Here the orb's radius follows the mouth opening from the shared
``MouthTracker``, its ring thickens on spread vowels, and while idle it
breathes slowly and dims briefly now and then (its blink). A third-party
package adds its own style the same way, under the ``voicemesh.avatar``
entry-point group.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from voicemesh.services.avatar.backend import (
    Animator,
    AvatarBackend,
    AvatarCard,
    FrameInput,
    Picture,
    RenderOptions,
)
from voicemesh.services.avatar.visemes import MouthTracker

COLOURS = {"blue": (90, 170, 255), "green": (90, 230, 160), "amber": (255, 190, 80)}


class Orb(Animator):
    """One stream's orb, drawn with one distance map computed when the stream opens."""

    def __init__(self, options: RenderOptions, colour: tuple[int, int, int]):
        self.tracker = MouthTracker(sample_rate_hz=options.sample_rate_hz, fps=options.fps)
        self.scale = min(options.width, options.height) / 2.0
        yy = np.arange(options.height, dtype=np.float32)[:, None] + 0.5 - options.height / 2
        xx = np.arange(options.width, dtype=np.float32)[None, :] + 0.5 - options.width / 2
        self.distance = np.sqrt(xx * xx + yy * yy)
        self.colour = np.asarray(colour, np.float32)
        self.background = np.full((options.height, options.width, 3), 14, np.uint8)

    def render(self, frame: FrameInput) -> Picture:
        shape = self.tracker.step(frame.audio, frame.phoneme)
        breath = 0.5 + 0.5 * math.sin(2 * math.pi * frame.time_s / 4.0)
        dim = 0.55 if (frame.time_s % 5.3) < 0.15 else 1.0  # a short dimming: the orb's blink
        radius = self.scale * (0.42 + 0.03 * breath + 0.3 * shape.open)
        ring = self.scale * (0.03 + 0.03 * max(0.0, shape.width))
        body = np.clip(radius - self.distance, 0.0, 1.0)
        glow = np.clip(1.0 - np.abs(self.distance - radius) / ring, 0.0, 1.0)
        light = (0.55 * body + 0.45 * glow) * dim
        rgb = self.background + (light[..., None] * self.colour).astype(np.uint8)
        return Picture(rgb=rgb, mouth_open=shape.open)

    def clear(self) -> None:
        self.tracker.clear()


class OrbAvatarBackend(AvatarBackend):
    """Provider ``orb``: one avatar, ``pulse``, in three colours."""

    provider: ClassVar[str] = "orb"

    @classmethod
    def avatars(cls, settings: Any) -> list[AvatarCard]:
        return [AvatarCard(descriptor="orb/pulse", variants=tuple(COLOURS), sizes=((256, 256), (512, 512)),
                           default_fps=25, description="audio-reactive orb (numpy); variants blue, green, amber")]

    def open(self, options: RenderOptions) -> Animator:
        return Orb(options, COLOURS[options.variant])
