import numpy as np
import pytest

from voicemesh import audio
from voicemesh.errors import InvalidInput


def tone(rate: int, seconds: float = 0.5, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("rate", [7999, 48001, 0, -16000])
def test_sample_rate_out_of_range(rate):
    with pytest.raises(InvalidInput, match="between 8000 and 48000"):
        audio.check_sample_rate(rate)


def test_sample_rate_in_range():
    assert audio.check_sample_rate(8000) == 8000
    assert audio.check_sample_rate(48000) == 48000


def test_odd_byte_count_and_oversized_chunk():
    with pytest.raises(InvalidInput, match="odd byte count"):
        audio.check_pcm(b"\x00\x01\x02", rate=16000)
    with pytest.raises(InvalidInput, match="over the limit"):
        audio.check_pcm(bytes(2 * 16001), rate=16000, max_seconds=1.0)
    assert audio.check_pcm(bytes(2 * 16000), rate=16000) == bytes(2 * 16000)


def test_pcm_float_round_trip():
    samples = tone(16000)
    back = audio.pcm_to_float(audio.float_to_pcm(samples))
    assert np.max(np.abs(back - samples)) < 1e-4
    # clipping instead of wrapping around
    assert audio.pcm_to_float(audio.float_to_pcm(np.array([2.0, -2.0], dtype=np.float32))).tolist() == [
        32767 / 32768,
        -1.0,
    ]


@pytest.mark.parametrize(("src", "dst"), [(48000, 16000), (8000, 16000), (22050, 24000)])
def test_resample_keeps_duration_and_frequency(src, dst):
    out = audio.resample(tone(src), src, dst)
    assert abs(len(out) - dst // 2) <= 2
    spectrum = np.abs(np.fft.rfft(out))
    peak_hz = np.argmax(spectrum) * dst / len(out)
    assert abs(peak_hz - 440) < 5


def test_stream_resampler_matches_whole_signal():
    src, dst = 48000, 16000
    signal = tone(src, 1.0)
    resampler = audio.StreamResampler(src, dst)
    pieces = [resampler.process(signal[i : i + 480]) for i in range(0, len(signal), 480)]
    pieces.append(resampler.process(np.zeros(0, dtype=np.float32), last=True))
    streamed = np.concatenate(pieces)
    whole = audio.resample(signal, src, dst)
    assert abs(len(streamed) - len(whole)) <= 2
    n = min(len(streamed), len(whole)) - 200
    assert np.max(np.abs(streamed[200:n] - whole[200:n])) < 0.01


def test_chunks_and_wav_round_trip(tmp_path):
    pcm = audio.float_to_pcm(tone(16000, 0.25))
    parts = list(audio.chunks(pcm, rate=16000, ms=20))
    assert b"".join(parts) == pcm
    assert all(len(p) == 640 for p in parts[:-1])
    path = tmp_path / "a.wav"
    audio.write_wav(path, pcm, 16000)
    assert audio.read_wav(path) == (pcm, 16000)
    assert audio.convert(pcm, 16000, 16000) == pcm


def test_read_wav_rejects_what_is_not_pcm16_wav(tmp_path):
    import io

    with pytest.raises(InvalidInput, match="not a readable 16-bit PCM WAV"):
        audio.read_wav(io.BytesIO(b"not a wav file at all"))
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(InvalidInput, match="empty.wav is not a readable"):
        audio.read_wav(path)
