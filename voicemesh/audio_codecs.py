"""Compressed audio in and out, on PyAV (FFmpeg): any container the caller sends decodes to the
mesh's PCM s16le mono, and PCM encodes to the formats OpenAI's speech endpoint offers.

``decode`` takes a whole file (wav of any sample width, float included, mp3, m4a/aac, ogg/opus,
webm, flac, ...; any rate and channel count) and stops as soon as the audio passes
``max_seconds``, so a small file that decompresses to hours costs no more than the limit.
``Encoder`` turns PCM into one output format piece by piece: each ``encode`` returns the
bytes the muxer has ready, so a reply streams out as it is synthesized.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from voicemesh.audio import check_sample_rate
from voicemesh.errors import InvalidInput, require_module


@dataclass(frozen=True)
class Format:
    """One output format: FFmpeg muxer and encoder, the rate the encoder runs at, the HTTP type."""

    container: str | None  # None: raw PCM (with a WAV header for "wav"), no FFmpeg involved
    codec: str | None
    rate: int | None  # None: the input's rate
    media_type: str


# OpenAI's speech formats. Opus runs at 48 kHz (the rates libopus takes), in Ogg as OpenAI sends it;
# AAC goes out as ADTS, a stream of self-framed packets that needs no index at the end.
FORMATS = {
    "mp3": Format("mp3", "libmp3lame", None, "audio/mpeg"),
    "opus": Format("ogg", "libopus", 48000, "audio/ogg"),
    "aac": Format("adts", "aac", None, "audio/aac"),
    "flac": Format("flac", "flac", None, "audio/flac"),
    "wav": Format(None, None, None, "audio/wav"),
    "pcm": Format(None, None, None, "audio/pcm"),
}


def _av():
    require_module("av", "gateway")
    import av

    return av


def decode(data: bytes, *, rate: int = 16000, max_seconds: float = 600.0) -> tuple[bytes, float]:
    """The first audio stream of an audio file as PCM s16le mono at ``rate``, and its duration (s).

    Raises ``InvalidInput`` for data FFmpeg cannot read, a file with no audio stream, or audio
    longer than ``max_seconds``.
    """
    av = _av()
    limit = int(max_seconds * rate)
    out = bytearray()
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise InvalidInput("the file has no audio stream", reason="file")
            stream = container.streams.audio[0]
            # Refused, not resampled: a tiny file claiming 1 Hz would resample to gigabytes.
            check_sample_rate(stream.rate or 0, "the audio file's sample rate")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
            for frame in container.decode(stream):
                for piece in resampler.resample(frame):
                    out += bytes(piece.planes[0])[: piece.samples * 2]
                if len(out) // 2 > limit:
                    raise _too_long(max_seconds)
            for piece in resampler.resample(None):
                out += bytes(piece.planes[0])[: piece.samples * 2]
    except av.error.FFmpegError as exc:
        if data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt " and len(data) >= 28:
            # FFmpeg will not open a WAV claiming a rate of 0: say what is wrong with it.
            check_sample_rate(struct.unpack("<I", data[24:28])[0], "the audio file's sample rate")
        raise InvalidInput("the file is not audio that can be decoded (wav, mp3, m4a, ogg, opus, webm, flac, "
                           f"...): {exc}", reason="file") from None
    if len(out) // 2 > limit:
        raise _too_long(max_seconds)
    return bytes(out), len(out) / 2 / rate


def _too_long(max_seconds: float) -> InvalidInput:
    return InvalidInput(f"the audio is longer than {max_seconds:g} s; the limit is {max_seconds:g} s "
                        "(--max-audio-s)", reason="file")


class _Sink:
    """A write-only file for the muxer: what it writes is taken out by ``take`` (no seek, so the
    muxer writes a streamable file)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data) -> int:
        self.buffer += data
        return len(data)

    def take(self) -> bytes:
        data, self.buffer = bytes(self.buffer), bytearray()
        return data


class Encoder:
    """PCM s16le mono at ``rate`` to ``name`` (one of ``FORMATS``), piece by piece.

    ``encode(pcm)`` returns the bytes ready so far (possibly none: encoders work in frames);
    ``close()`` returns the rest. One encoder makes one file.
    """

    def __init__(self, name: str, rate: int):
        if name not in FORMATS:
            raise InvalidInput(f"response_format {name!r} is not supported; use one of {', '.join(FORMATS)}",
                               reason="response_format")
        self.format = FORMATS[name]
        self.name = name
        self.rate = rate
        self._pts = 0
        self._header_sent = False
        self._container = None
        if self.format.container is not None:
            av = _av()
            self._av = av
            self._sink = _Sink()
            self._container = av.open(self._sink, mode="w", format=self.format.container)
            self._stream = self._container.add_stream(self.format.codec, rate=self.format.rate or rate,
                                                      layout="mono")

    @property
    def media_type(self) -> str:
        return self.format.media_type

    def encode(self, pcm: bytes) -> bytes:
        if self._container is None:
            return self._raw(pcm)
        if not pcm:
            return b""
        frame = self._av.AudioFrame(format="s16", layout="mono", samples=len(pcm) // 2)
        frame.planes[0].update(pcm[: len(pcm) // 2 * 2])
        frame.sample_rate = self.rate
        frame.pts = self._pts
        self._pts += frame.samples
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._sink.take()

    def close(self) -> bytes:
        if self._container is None:
            return self._raw(b"")
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._sink.take()

    def _raw(self, pcm: bytes) -> bytes:
        if self.name == "wav" and not self._header_sent:
            self._header_sent = True
            return wav_header(self.rate) + pcm
        return pcm


def wav_header(rate: int) -> bytes:
    """The header of a streamed 16-bit mono WAV file: its sizes are unknown up front, so they are set
    to the maximum (as FFmpeg does when it writes to a pipe)."""
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)  # PCM, mono, 16-bit
    return b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", 0xFFFFFFFF)
