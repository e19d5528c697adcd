"""The edges' audio formats: G.711 μ-law both ways, and PCM of any width and channel count."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from voicemesh.edges.pcm import check_format, mulaw_to_pcm, pcm_to_mulaw, to_float_mono
from voicemesh.errors import InvalidInput


def test_mulaw_decodes_the_g711_table():
    pcm = np.frombuffer(mulaw_to_pcm(bytes([0xFF, 0x7F, 0x80, 0x00, 0xFE, 0x7E, 0xEF])), dtype="<i2")
    assert pcm.tolist() == [0, 0, 32124, -32124, 8, -8, 132]


def test_mulaw_round_trips_every_code():
    codes = bytes(c for c in range(256) if c != 0x7F)  # 0x7F is "negative zero", encoded back as 0xFF
    assert pcm_to_mulaw(mulaw_to_pcm(codes)) == codes


def test_mulaw_matches_the_standard_library_codec():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    pcm = np.arange(-32768, 32768, 7, dtype=np.int32).astype("<i2").tobytes()
    assert mulaw_to_pcm(bytes(range(256))) == audioop.ulaw2lin(bytes(range(256)), 2)
    ours, theirs = np.frombuffer(pcm_to_mulaw(pcm), np.uint8), np.frombuffer(audioop.lin2ulaw(pcm, 2), np.uint8)
    # audioop drops two bits before the bias; a sample on a step's edge may land one step over.
    decoded = np.frombuffer(mulaw_to_pcm(ours.tobytes()), "<i2").astype(int)
    reference = np.frombuffer(mulaw_to_pcm(theirs.tobytes()), "<i2").astype(int)
    assert (ours == theirs).mean() > 0.99 and np.abs(decoded - reference).max() <= 1024


@pytest.mark.parametrize(("width", "channels"), [(1, 1), (2, 2), (3, 1), (4, 2)])
def test_any_width_and_channel_count_becomes_mono(width, channels):
    values = np.array([0, 1000, -1000, 32767, -32768], dtype=np.int64)
    if width == 1:
        raw = ((values >> 8) + 128).astype(np.uint8).tobytes()
    elif width == 3:
        raw = np.frombuffer((values << 8).astype("<i4").tobytes(), np.uint8).reshape(-1, 4)[:, :3].tobytes()
    else:
        raw = (values << (8 * (width - 2))).astype(f"<i{width}").tobytes()
    frames = b"".join(raw[i * width:(i + 1) * width] * channels for i in range(len(values)))
    tolerance = 1 / 128 if width == 1 else 1e-6
    assert np.allclose(to_float_mono(frames, width, channels), values / 32768, atol=tolerance)


def test_bad_formats_are_refused_with_the_field_named():
    with pytest.raises(InvalidInput, match="width"):
        check_format(16000, 5, 1)
    with pytest.raises(InvalidInput, match="rate"):
        check_format(0, 2, 1)
    with pytest.raises(InvalidInput, match="frames"):
        to_float_mono(b"\x00\x00\x00", 2, 1)
