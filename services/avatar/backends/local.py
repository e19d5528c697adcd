"""``local/ada``: a procedurally drawn 2D face, rendered on the CPU with numpy.

The still parts (background, head, hair, eyes) are drawn once per stream; a
frame copies them and redraws only what moves: the mouth (shape from
``visemes.MouthTracker``), the eyelids when blinking and the shoulders, which
rise and fall with breathing. The head itself holds still, so the mouth's
pixels change only when the mouth does. In a frame of any size the face is
centred and scaled to the shorter side; the mouth sits in the box
x 0.35..0.65, y 0.55..0.77 of a square frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from voicemesh.services.avatar import draw
from voicemesh.services.avatar.backend import (
    Animator,
    AvatarBackend,
    AvatarCard,
    FrameInput,
    Picture,
    RenderOptions,
)
from voicemesh.services.avatar.visemes import MouthShape, MouthTracker

BLINK_S = 0.18
BREATH_PERIOD_S = 4.2


@dataclass(frozen=True)
class Palette:
    """Colours of one variant."""

    sky_top: draw.Color
    sky_bottom: draw.Color
    skin: draw.Color
    skin_shade: draw.Color
    hair: draw.Color
    shirt: draw.Color
    iris: draw.Color
    lips: draw.Color


PALETTES = {
    "day": Palette((196, 222, 240), (150, 186, 214), (241, 200, 170), (222, 170, 140), (92, 58, 40),
                   (60, 110, 160), (70, 120, 90), (196, 96, 96)),
    "night": Palette((40, 44, 78), (16, 18, 38), (214, 172, 146), (186, 140, 116), (36, 28, 30),
                     (140, 70, 90), (90, 110, 170), (170, 80, 90)),
}


class AdaFace(Animator):
    """One stream's face; coordinates are authored on a 512 grid and scaled."""

    def __init__(self, options: RenderOptions, palette: Palette, seed: int = 0):
        self.width, self.height = options.width, options.height
        self.palette = palette
        self.unit = min(self.width, self.height) / 512.0
        self.origin = ((self.width - 512 * self.unit) / 2, (self.height - 512 * self.unit) / 2)
        self.tracker = MouthTracker(sample_rate_hz=options.sample_rate_hz, fps=options.fps)
        self._rng = np.random.default_rng(seed)
        self._next_blink = float(self._rng.uniform(0.8, 2.5))
        self._pad = int(math.ceil(4 * self.unit)) + 1
        self._body_top = int(self._y(416))
        # Kept as uint8 only (a float copy of a 2048x2048 face would be 50 MB); moving parts are redrawn
        # in float from small crops of it.
        self.base8 = draw.to_uint8(self._draw_still())
        self.body8 = draw.to_uint8(self._draw_body())
        u = self.unit
        self.mouth_box = self._box(256 - 80, 338 - 58, 256 + 80, 338 + 58)
        self.eye_boxes = [self._box(cx - 40, 235 - 28, cx + 40, 235 + 28) for cx in (205, 307)]
        self._eye_radii = (32 * u, 20 * u)

    def _x(self, x: float) -> float:
        return self.origin[0] + x * self.unit

    def _y(self, y: float) -> float:
        return self.origin[1] + y * self.unit

    def _box(self, x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
        return (max(0, int(self._y(y0))), min(self.height, int(self._y(y1)) + 1),
                max(0, int(self._x(x0))), min(self.width, int(self._x(x1)) + 1))

    def _ellipse(self, image: np.ndarray, cx, cy, rx, ry, color, opacity=1.0, dy: float = 0.0) -> None:
        draw.ellipse(image, self._x(cx), self._y(cy) + dy, rx * self.unit, ry * self.unit, color, opacity)

    def _draw_still(self) -> np.ndarray:
        p = self.palette
        image = draw.vertical_gradient(self.height, self.width, p.sky_top, p.sky_bottom)
        self._ellipse(image, 256, 215, 164, 176, p.hair)  # hair behind the head
        x0, x1 = int(round(self._x(214))), int(round(self._x(298)))
        image[int(self._y(330)) :, max(0, x0) : max(0, x1)] = p.skin_shade  # neck, as in _draw_body
        for cx in (112, 400):
            self._ellipse(image, cx, 250, 18, 32, p.skin_shade)  # ears
        self._ellipse(image, 256, 236, 138, 168, p.skin)  # head
        self._ellipse(image, 256, 108, 150, 70, p.hair)  # fringe
        self._ellipse(image, 150, 150, 40, 70, p.hair)
        self._ellipse(image, 362, 150, 40, 70, p.hair)
        for cx in (180, 332):
            self._ellipse(image, cx, 300, 30, 18, (236, 140, 140), opacity=0.25)  # cheeks
        self._ellipse(image, 256, 290, 12, 9, p.skin_shade)  # nose
        for cx in (205, 307):
            self._ellipse(image, cx, 196, 34, 6, p.hair)  # brows
            self._ellipse(image, cx, 235, 32, 20, (250, 250, 246))  # eye white
            self._ellipse(image, cx, 236, 14, 14, p.iris)
            self._ellipse(image, cx, 236, 7, 7, (20, 20, 24))
            self._ellipse(image, cx + 5, 231, 3, 3, (255, 255, 255))
        return image

    def _draw_body(self) -> np.ndarray:
        """Neck and shoulders on a canvas ``pad`` rows taller at each end, so breathing can shift it."""
        p, pad = self.palette, self._pad
        top = self.origin[1] - pad
        image = draw.vertical_gradient(self.height + 2 * pad, self.width, p.sky_top, p.sky_bottom)
        x0, x1 = int(round(self._x(214))), int(round(self._x(298)))
        image[:, max(0, x0) : max(0, x1)] = p.skin_shade  # the neck is a straight band: seamless when shifted
        draw.ellipse(image, self._x(256), self._y(560) - top + self.origin[1], 232 * self.unit, 124 * self.unit,
                     p.shirt)
        draw.ellipse(image, self._x(256), self._y(440) - top + self.origin[1], 44 * self.unit, 16 * self.unit,
                     p.skin_shade)
        return image

    def render(self, frame: FrameInput) -> Picture:
        shape = self.tracker.step(frame.audio, frame.phoneme)
        out = self.base8.copy()
        lift = int(round(math.sin(2 * math.pi * frame.time_s / BREATH_PERIOD_S) * 3 * self.unit))
        start = self._body_top + self._pad + lift
        out[self._body_top :] = self.body8[start : start + self.height - self._body_top]
        self._draw_mouth(out, shape)
        blink = self._blink(frame.time_s)
        if blink > 0.02:
            self._draw_lids(out, blink)
        return Picture(rgb=out, mouth_open=shape.open)

    def clear(self) -> None:
        self.tracker.clear()

    def _blink(self, t: float) -> float:
        while t > self._next_blink + BLINK_S:
            self._next_blink += float(self._rng.uniform(2.0, 5.5))
        phase = (t - self._next_blink) / BLINK_S
        return max(0.0, 1.0 - abs(2.0 * phase - 1.0)) if 0.0 <= phase <= 1.0 else 0.0

    def _draw_mouth(self, out: np.ndarray, shape: MouthShape) -> None:
        y0, y1, x0, x1 = self.mouth_box
        region = self.base8[y0:y1, x0:x1].astype(np.float32)
        u, p = self.unit, self.palette
        cx, cy = self._x(256) - x0, self._y(338) - y0
        rounded = max(0.0, -shape.width)
        half_w = u * (40 + 12 * shape.width) * (1 - 0.2 * shape.open * rounded)
        half_h = u * (1.2 + 30 * shape.open) * (1 + 0.25 * rounded)
        draw.ellipse(region, cx, cy, half_w + 6 * u, half_h + 6 * u, p.lips)
        inner = draw.ellipse_alpha(region.shape[:2], cx, cy + u * shape.open, half_w, half_h)
        if inner is not None:
            iy, ix, alpha = inner
            draw.blend(region, iy, ix, alpha, (70, 22, 34))
            h, w = alpha.shape
            yy = np.arange(iy, iy + h, dtype=np.float32)[:, None] + 0.5
            if shape.teeth > 0.05:  # upper teeth: a band under the top lip, inside the opening
                teeth_edge = cy - half_h + half_h * (0.25 + 0.6 * shape.teeth)
                draw.blend(region, iy, ix, alpha * np.clip(teeth_edge - yy, 0, 1), (246, 244, 236))
            if shape.open > 0.25:  # tongue at the bottom of an open mouth
                tongue_edge = cy + half_h * 0.35
                draw.blend(region, iy, ix, alpha * np.clip(yy - tongue_edge, 0, 1), (200, 90, 100), 0.8)
        out[y0:y1, x0:x1] = draw.to_uint8(region)

    def _draw_lids(self, out: np.ndarray, amount: float) -> None:
        rx, ry = self._eye_radii
        for (y0, y1, x0, x1), ecx in zip(self.eye_boxes, (205, 307)):
            region = self.base8[y0:y1, x0:x1].astype(np.float32)
            cx, cy = self._x(ecx) - x0, self._y(235) - y0
            eye = draw.ellipse_alpha(region.shape[:2], cx, cy, rx + self.unit, ry + self.unit)
            if eye is None:
                continue
            ey, ex, alpha = eye
            edge = cy - ry + 2 * ry * amount
            yy = np.arange(ey, ey + alpha.shape[0], dtype=np.float32)[:, None] + 0.5
            draw.blend(region, ey, ex, alpha * np.clip(edge - yy, 0, 1), self.palette.skin)
            draw.blend(region, ey, ex, alpha * np.clip(1.5 * self.unit - np.abs(yy - edge), 0, 1), (40, 30, 30))
            out[y0:y1, x0:x1] = draw.to_uint8(region)


class LocalAvatarBackend(AvatarBackend):
    """Provider ``local``: faces drawn on the CPU, nothing to download."""

    provider: ClassVar[str] = "local"

    @classmethod
    def avatars(cls, settings: Any) -> list[AvatarCard]:
        return [AvatarCard(
            descriptor="local/ada", variants=tuple(PALETTES), sizes=((256, 256), (512, 512), (720, 720)),
            default_fps=25, description="procedural 2D face (numpy), mouth from the audio or TTS phonemes; "
            "variants day, night",
        )]

    def open(self, options: RenderOptions) -> Animator:
        return AdaFace(options, PALETTES[options.variant])
