"""The agent's spoken answer as an MP4: its audio and its avatar's frames muxed by PyAV (``talk --out x.mp4``).

Frames come as AgentVideo events in raw I420, each placed by the agent-audio
sample it shows (``audio_offset``), so the video lines up with the audio as
the client heard it. Idle frames between replies are left out, as the
answer's audio has no gaps either; a frame the stream skipped repeats the one
before, and the last one is held to the end of the audio.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from voicemesh.client.events import AgentVideo


def write_mp4(path: Path, audio: bytes, rate: int, frames: list[AgentVideo], fps: int) -> float:
    """Write ``audio`` (PCM s16le mono at ``rate``) with ``frames`` at ``fps``; returns the video's seconds."""
    import av  # the video extra

    speech = sorted((f for f in frames if f.audio_offset >= 0), key=lambda f: f.audio_offset)
    if not speech:
        raise ValueError("the avatar sent no frames of the answer's audio")
    width, height = speech[0].width, speech[0].height
    samples = len(audio) // 2
    count = max(1, round(samples * fps / rate))  # frames that cover the audio
    by_index: dict[int, AgentVideo] = {}
    for frame in speech:
        by_index.setdefault(round(frame.audio_offset * fps / rate), frame)
    out = av.open(str(path), "w", format="mp4")
    try:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = out.add_stream("aac", rate=rate)
        sound.layout = "mono"
        shown = speech[0]
        for i in range(count):
            shown = by_index.get(i, shown)
            picture = np.frombuffer(shown.data, np.uint8).reshape(height * 3 // 2, width)
            frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        pcm = av.AudioFrame.from_ndarray(np.frombuffer(audio, np.int16).reshape(1, -1), format="s16", layout="mono")
        pcm.sample_rate, pcm.pts = rate, 0
        for packet in sound.encode(pcm):
            out.mux(packet)
        for packet in sound.encode():
            out.mux(packet)
    finally:
        out.close()
    return count / fps
