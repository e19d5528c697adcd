"""PCM helpers: validation, resampling (soxr), chunking and WAV files.

All audio on the wire is PCM signed 16-bit little-endian mono with an
explicit sample rate.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soxr

from voicemesh.errors import InvalidInput

MIN_SAMPLE_RATE_HZ = 8000
MAX_SAMPLE_RATE_HZ = 48000
SAMPLE_WIDTH = 2


def check_sample_rate(rate: int, what: str = "sample_rate_hz") -> int:
    """Return ``rate`` if it lies in 8–48 kHz, else raise ``InvalidInput``."""
    if not isinstance(rate, int) or not MIN_SAMPLE_RATE_HZ <= rate <= MAX_SAMPLE_RATE_HZ:
        raise InvalidInput(f"{what} must be between {MIN_SAMPLE_RATE_HZ} and {MAX_SAMPLE_RATE_HZ} Hz, got {rate}")
    return rate


def check_pcm(data: bytes, *, rate: int, max_seconds: float = 1.0) -> bytes:
    """Validate one PCM s16le chunk: even byte count and at most ``max_seconds``."""
    if len(data) % SAMPLE_WIDTH:
        raise InvalidInput(f"audio chunk has an odd byte count ({len(data)}); PCM s16le needs 2 bytes per sample")
    limit = int(rate * max_seconds) * SAMPLE_WIDTH
    if len(data) > limit:
        raise InvalidInput(
            f"audio chunk of {len(data)} bytes is over the limit of {limit} bytes ({max_seconds:g} s at {rate} Hz)"
        )
    return data


def pcm_to_float(data: bytes) -> np.ndarray:
    """PCM s16le bytes to float32 samples in [-1, 1)."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm(samples: np.ndarray) -> bytes:
    """Float samples to PCM s16le bytes, clipped."""
    return (np.clip(samples, -1.0, 32767 / 32768) * 32768.0).astype("<i2").tobytes()


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample float32 samples with soxr (identity when the rates match)."""
    if from_rate == to_rate or len(samples) == 0:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples, from_rate, to_rate).astype(np.float32, copy=False)


class StreamResampler:
    """Resamples a stream chunk by chunk without clicks at chunk borders."""

    def __init__(self, from_rate: int, to_rate: int):
        self.from_rate, self.to_rate = from_rate, to_rate
        self._stream = None if from_rate == to_rate else soxr.ResampleStream(from_rate, to_rate, 1, dtype="float32")

    def process(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        """Resample the next chunk; ``last`` flushes what the filter holds."""
        samples = samples.astype(np.float32, copy=False)
        if self._stream is None:
            return samples
        return self._stream.resample_chunk(samples, last=last)


def chunks(data: bytes, *, rate: int, ms: int = 20) -> Iterator[bytes]:
    """Cut PCM bytes into chunks of ``ms`` milliseconds (the last may be shorter)."""
    size = max(1, rate * ms // 1000) * SAMPLE_WIDTH
    for start in range(0, len(data), size):
        yield data[start : start + size]


def read_wav(path: str | Path | io.BytesIO) -> tuple[bytes, int]:
    """Read a PCM s16le WAV file (mono, or the first channel of stereo); returns (pcm, rate).

    A file that is not a 16-bit PCM WAV raises ``InvalidInput`` saying why.
    """
    name = "WAV data" if isinstance(path, io.BytesIO) else str(path)
    try:
        with wave.open(path if isinstance(path, io.BytesIO) else str(path), "rb") as wav:
            if wav.getsampwidth() != SAMPLE_WIDTH:
                raise InvalidInput(f"{name}: only 16-bit PCM WAV is supported, got {8 * wav.getsampwidth()}-bit")
            channels, rate = wav.getnchannels(), wav.getframerate()
            data = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise InvalidInput(f"{name} is not a readable 16-bit PCM WAV file: {exc}") from None
    if channels > 1:
        data = np.frombuffer(data, dtype="<i2")[::channels].tobytes()
    return data, rate


def wav_bytes(pcm: bytes, rate: int) -> bytes:
    """PCM s16le mono to the bytes of a WAV file."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(SAMPLE_WIDTH)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    return buf.getvalue()


def write_wav(path: str | Path, pcm: bytes, rate: int) -> None:
    """Write PCM s16le mono to a WAV file."""
    Path(path).write_bytes(wav_bytes(pcm, rate))


def convert(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """Resample PCM s16le bytes from one rate to another."""
    return float_to_pcm(resample(pcm_to_float(pcm), from_rate, to_rate))
