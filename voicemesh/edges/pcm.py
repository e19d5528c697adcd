"""Audio formats the edges meet, turned into the mesh's PCM s16le mono (and back).

Wyoming clients send PCM of any width and channel count; telephony sends G.711
μ-law. Both are converted here with numpy so the rest of the mesh only sees
PCM s16le mono (resampling stays with ``voicemesh.audio``'s soxr helpers).
"""

from __future__ import annotations

import numpy as np

from voicemesh.errors import InvalidInput

MAX_CHANNELS = 16
MAX_RATE_HZ = 384_000


def check_format(rate: object, width: object, channels: object) -> tuple[int, int, int]:
    """(rate, width, channels) as ints, or ``InvalidInput`` naming the field that is wrong."""
    for name, value, low, high in (("rate", rate, 1000, MAX_RATE_HZ), ("width", width, 1, 4),
                                   ("channels", channels, 1, MAX_CHANNELS)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidInput(f"audio {name} must be an integer from {low} to {high}, got {value!r}", reason=name)
    return rate, width, channels  # type: ignore[return-value]


def to_float_mono(data: bytes, width: int, channels: int) -> np.ndarray:
    """Interleaved PCM (8-bit unsigned, or 16/24/32-bit signed little-endian) as float32 mono in [-1, 1)."""
    frame = width * channels
    if len(data) % frame:
        raise InvalidInput(f"audio of {len(data)} bytes is not a whole number of {width}-byte x {channels}-channel "
                           f"frames ({frame} bytes each)", reason="audio")
    if width == 1:
        samples = (np.frombuffer(data, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        # numpy has no 24-bit type: put each sample's three bytes in the top of a 32-bit word (sign kept).
        raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3)
        words = np.zeros((len(raw), 4), dtype=np.uint8)
        words[:, 1:] = raw
        samples = words.view("<i4").reshape(-1).astype(np.float32) / 2147483648.0
    else:
        samples = np.frombuffer(data, dtype="<i4").astype(np.float32) / 2147483648.0
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return samples


# G.711 μ-law (ITU-T G.711, the telephone codec): 8-bit codes of a 14-bit magnitude on a log scale.
_BIAS = 0x84
_CLIP = 32635


def _decode_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.uint8)
    exponent = (codes >> 4) & 0x07
    mantissa = (codes & 0x0F).astype(np.int32)
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(codes & 0x80, -magnitude, magnitude).astype("<i2")


_DECODE = _decode_table()


def mulaw_to_pcm(data: bytes) -> bytes:
    """G.711 μ-law bytes to PCM s16le (one sample per byte)."""
    return _DECODE[np.frombuffer(data, dtype=np.uint8)].tobytes()


def pcm_to_mulaw(pcm: bytes) -> bytes:
    """PCM s16le to G.711 μ-law bytes."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.int32)
    sign = np.where(samples < 0, 0x80, 0x00)
    magnitude = np.minimum(np.abs(samples), _CLIP) + _BIAS
    # The segment is the position of the highest set bit above bit 7 (0..7).
    exponent = np.clip(np.floor(np.log2(magnitude)).astype(np.int32) - 7, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa)).astype(np.uint8).tobytes()
