"""Frame encodings: raw I420 or RGB, JPEG, or any video encoder PyAV can write.

PyAV (``av``, the avatar extra) does the colour conversion (swscale) and the
compression; one ``FrameEncoder`` per stream keeps the codec's state, so
H.264 or VP8 packets form one continuous bitstream for the stream's frames.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from voicemesh.errors import InvalidInput, MissingExtra

RAW = ("i420", "rgb24")
# Low-latency settings: one packet out per frame in, no lookahead buffering.
_CODEC_OPTIONS = {
    "libx264": {"preset": "ultrafast", "tune": "zerolatency"},
    "h264": {"preset": "ultrafast", "tune": "zerolatency"},
    "libvpx": {"deadline": "realtime", "lag-in-frames": "0", "cpu-used": "8"},
    "vp8": {"deadline": "realtime", "lag-in-frames": "0", "cpu-used": "8"},
    "libvpx-vp9": {"deadline": "realtime", "lag-in-frames": "0", "cpu-used": "8"},
    "vp9": {"deadline": "realtime", "lag-in-frames": "0", "cpu-used": "8"},
}
LISTED = ("i420", "rgb24", "jpeg", "h264", "vp8", "vp9", "mpeg4")


def _av():
    if importlib.util.find_spec("av") is None:
        raise MissingExtra("av", "avatar")
    import av

    return av


def check_encoding(name: str) -> str:
    """The encoding to use for a config's ``encoding`` (empty is i420); INVALID_ARGUMENT for unknown ones."""
    name = (name or "i420").strip().lower()
    if name in RAW:
        return name
    av = _av()
    if name == "jpeg":
        name = "mjpeg"
    try:
        codec = av.codec.Codec(name, "w")
    except Exception:  # PyAV raises UnknownCodecError or ValueError depending on the name
        codec = None
    if codec is None or codec.type != "video":
        raise InvalidInput(f"unknown video encoding {name!r}; use one of {', '.join(LISTED)} "
                           "(or another video encoder of this server's PyAV)")
    return "jpeg" if name == "mjpeg" else name


@dataclass
class Encoded:
    """One frame's bytes and whether they start a keyframe."""

    data: bytes
    keyframe: bool


class FrameEncoder:
    """Turns RGB frames of one stream into bytes of one encoding."""

    def __init__(self, encoding: str, *, width: int, height: int, fps: int):
        self.encoding = encoding
        self.width, self.height = width, height
        self._context = None
        if encoding == "rgb24":
            return
        self._av = _av()
        if encoding == "i420":
            return
        name = "mjpeg" if encoding == "jpeg" else encoding
        context = self._av.CodecContext.create(name, "w")
        context.width, context.height = width, height
        # Full-range YUV is what a standalone JPEG decoder expects.
        context.pix_fmt = "yuvj420p" if name == "mjpeg" else "yuv420p"
        context.time_base = Fraction(1, fps)
        context.framerate = Fraction(fps)
        options = dict(_CODEC_OPTIONS.get(name, {}))
        if name == "mjpeg":
            options["qscale"] = "3"
        context.options = options
        context.thread_count = 1  # one stream, one core: the budget the issue sets
        if name != "mjpeg":
            context.gop_size = 2 * fps  # a keyframe every two seconds lets a late viewer join
        try:
            context.open()
        except Exception as exc:  # an encoder that exists but refuses this size or rate
            raise InvalidInput(f"video encoder {name} cannot encode {width}x{height} at {fps} fps: {exc}") from exc
        self._context = context
        self._pts = 0

    def encode(self, rgb: np.ndarray) -> Encoded:
        if self.encoding == "rgb24":
            return Encoded(rgb.tobytes(), True)
        frame = self._av.VideoFrame.from_ndarray(rgb, format="rgb24")
        if self.encoding == "i420":
            return Encoded(bytes(frame.reformat(format="yuv420p").to_ndarray().data), True)
        frame = frame.reformat(format=self._context.pix_fmt)
        frame.pts = self._pts
        self._pts += 1
        packets = self._context.encode(frame)
        return Encoded(b"".join(bytes(p) for p in packets), any(p.is_keyframe for p in packets))
