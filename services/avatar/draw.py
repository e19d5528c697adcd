"""Anti-aliased shapes drawn with numpy, for the procedural faces.

Each shape works on the smallest box that holds it, so a frame only touches
the pixels that move (mouth, eyelids, shoulders): that is what keeps a
512x512 face well above 25 fps on one core.
"""

from __future__ import annotations

import numpy as np

Color = tuple[float, float, float]


def ellipse_alpha(
    shape: tuple[int, int], cx: float, cy: float, rx: float, ry: float
) -> tuple[int, int, np.ndarray] | None:
    """Coverage (0..1) of an ellipse in an image of ``shape`` (h, w): (y0, x0, alpha) of its box, or None off-image."""
    rx, ry = max(rx, 0.5), max(ry, 0.5)
    height, width = shape
    y0, y1 = max(0, int(cy - ry) - 1), min(height, int(cy + ry) + 2)
    x0, x1 = max(0, int(cx - rx) - 1), min(width, int(cx + rx) + 2)
    if y0 >= y1 or x0 >= x1:
        return None
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - cy
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - cx
    # Implicit function over its gradient's length: a signed distance in pixels that stays right for
    # flat ellipses (a closed mouth is one), so the edge is one pixel soft at any aspect.
    field = (dx / rx) ** 2 + (dy / ry) ** 2 - 1.0
    gradient = 2.0 * np.sqrt((dx / rx**2) ** 2 + (dy / ry**2) ** 2) + 1e-6
    return y0, x0, np.clip(0.5 - field / gradient, 0.0, 1.0)


def blend(image: np.ndarray, y0: int, x0: int, alpha: np.ndarray, color: Color, opacity: float = 1.0) -> None:
    """Paint ``color`` over the float32 ``image`` with ``alpha`` placed at (y0, x0)."""
    h, w = alpha.shape
    region = image[y0 : y0 + h, x0 : x0 + w]
    a = (alpha * opacity)[..., None]
    region += (np.asarray(color, dtype=np.float32) - region) * a


def ellipse(image: np.ndarray, cx: float, cy: float, rx: float, ry: float, color: Color, opacity: float = 1.0) -> None:
    """Fill an anti-aliased ellipse on a float32 RGB image."""
    found = ellipse_alpha(image.shape[:2], cx, cy, rx, ry)
    if found is not None:
        y0, x0, alpha = found
        blend(image, y0, x0, alpha, color, opacity)


def vertical_gradient(height: int, width: int, top: Color, bottom: Color) -> np.ndarray:
    """A float32 RGB image fading from ``top`` to ``bottom``."""
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    column = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t
    return np.repeat(column, width, axis=1)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A float32 RGB image (0..255) as uint8."""
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)
