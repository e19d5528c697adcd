"""Audio files in the formats clients upload, made with PyAV (FFmpeg) from test speech."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from voicemesh.audio import convert, wav_bytes

# name -> (file suffix, FFmpeg muxer, encoder, sample format, rate, channels)
UPLOADS = {
    "wav": (".wav", None, None, None, 22050, 1),
    "wav-float-stereo": (".wav", "wav", "pcm_f32le", "flt", 44100, 2),
    "mp3": (".mp3", "mp3", "libmp3lame", "s16p", 44100, 2),
    "flac": (".flac", "flac", "flac", "s16", 48000, 1),
    "ogg-opus": (".ogg", "ogg", "libopus", "s16", 48000, 1),
    "webm": (".webm", "webm", "libopus", "s16", 48000, 2),
    "m4a": (".m4a", "ipod", "aac", "fltp", 32000, 1),
}


def write_upload(path: Path, kind: str, pcm: bytes, rate: int) -> Path:
    """``pcm`` (s16le mono at ``rate``) written as an upload of ``kind`` (a key of UPLOADS)."""
    suffix, container, codec, sample_format, out_rate, channels = UPLOADS[kind]
    path = path.with_suffix(suffix)
    pcm = convert(pcm, rate, out_rate)
    if container is None:
        path.write_bytes(wav_bytes(pcm, out_rate))
        return path
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    layout = "stereo" if channels == 2 else "mono"
    with av.open(str(path), mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=out_rate, layout=layout)
        # Interleaved float frames in; PyAV converts them to what the encoder takes.
        data = np.repeat(samples[None, :], channels, axis=0).T.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="flt", layout=layout)
        frame.sample_rate = out_rate
        frame.pts = 0
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def decoded_seconds(data: bytes, expected_format: str) -> float:
    """Seconds of audio in ``data``, asserting that FFmpeg reads it as ``expected_format``."""
    import io

    with av.open(io.BytesIO(data)) as container:
        assert expected_format in container.format.name.split(","), container.format.name
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.rate
