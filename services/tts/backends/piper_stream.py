"""A piper voice run in two parts, so a sentence's first audio does not wait for all of its audio.

A piper voice is one ONNX graph (VITS): a text encoder, a duration predictor
and a flow turn phoneme ids into latent frames (256 samples of audio each),
then a HiFi-GAN decoder turns the frames into audio. The decoder is about
70% of a sentence's cost and grows with its length, while its convolutions
only look a few frames either side. So the graph is cut at the decoder's
input once, when the voice loads (both parts come from the same ``.onnx``
file), and each sentence's frames are decoded in two chunks: the first
``FIRST_FRAMES`` (about 190 ms of audio at 22050 Hz), then the rest while
that plays. Each chunk borrows ``CONTEXT_FRAMES`` frames on either side and
keeps only its own samples. With 12 the chunked audio matched the whole
decode to within 1e-6 on en_US-joe-medium (8 frames left errors of 1e-3).

Cutting needs the ``onnx`` package and a graph laid out as piper's exporter
makes it (``/dec/conv_pre/Conv``); a voice whose graph is not, or a voice
with several speakers (its decoder also takes the speaker), runs whole.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FIRST_FRAMES = 16
CONTEXT_FRAMES = 12
DECODER_ENTRY = "/dec/conv_pre/Conv"  # the decoder's first node in piper's exported graphs
# piper's raw output peaks at 0.4-0.75 (0.25 for "Hmm."). One gain for every chunk, since a sentence's peak is
# not known before its last chunk is decoded; samples past full scale are clipped when converted to PCM.
GAIN = 1.3


@dataclass(frozen=True)
class SplitVoice:
    """The two halves of one piper graph: phoneme ids -> latent frames, latent frames -> audio."""

    encoder: Any  # onnxruntime.InferenceSession
    decoder: Any  # onnxruntime.InferenceSession
    latent: str  # the decoder's input: the flow's frames times the frame mask, (1, channels, frames)

    def frames(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """The latent frames of one sentence (the whole graph's inputs)."""
        return self.encoder.run(None, inputs)[0]

    def decode(self, frames: np.ndarray, start: int, end: int) -> np.ndarray:
        """Audio of frames ``start``..``end``, decoded with ``CONTEXT_FRAMES`` of context on either side."""
        total = frames.shape[2]
        lo, hi = max(0, start - CONTEXT_FRAMES), min(total, end + CONTEXT_FRAMES)
        audio = np.asarray(self.decoder.run(None, {self.latent: frames[:, :, lo:hi]})[0], dtype=np.float32).reshape(-1)
        hop = len(audio) // (hi - lo)
        return audio[(start - lo) * hop : (end - lo) * hop]


def chunk_bounds(frames: int) -> list[tuple[int, int]]:
    """The chunks a sentence of ``frames`` latent frames is decoded in: a short first one, then the rest."""
    if frames <= FIRST_FRAMES + CONTEXT_FRAMES:
        return [(0, frames)]  # the rest would cost more in context than it saves
    return [(0, FIRST_FRAMES), (FIRST_FRAMES, frames)]


def split_voice(model: Path, make_session: Any) -> SplitVoice | None:
    """The voice's graph cut at its decoder, or None (with the reason logged) when it cannot be.

    ``make_session`` turns serialized model bytes into an onnxruntime session with the backend's options.
    """
    if importlib.util.find_spec("onnx") is None:
        log.warning("piper voice %s runs whole: the onnx package is missing (pip install 'voicemesh[tts]'), so "
                    "each sentence's first audio waits for all of its audio", model.name)
        return None
    import onnx
    import onnx.utils

    graph_model = onnx.load(str(model))
    graph = graph_model.graph
    inputs = [i.name for i in graph.input]
    entry = next((node for node in graph.node if node.name == DECODER_ENTRY), None)
    if entry is None or "sid" in inputs or len(graph.output) != 1:
        log.info("piper voice %s runs whole: %s", model.name,
                 "it has several speakers" if "sid" in inputs else "its graph is not laid out as piper exports it")
        return None
    latent = entry.input[0]
    try:
        extractor = onnx.utils.Extractor(graph_model)
        encoder = extractor.extract_model(inputs, [latent])
        decoder = extractor.extract_model([latent], [graph.output[0].name])
        # onnx's checker would refuse the cut (the latent tensor has no declared shape); onnxruntime checks the
        # parts as it loads them, which is what matters.
        return SplitVoice(make_session(encoder.SerializeToString()), make_session(decoder.SerializeToString()),
                          latent)
    except Exception as exc:  # onnx and onnxruntime raise their own classes for a graph they cannot cut or load
        log.info("piper voice %s runs whole: its graph cannot be cut at the decoder (%s)", model.name, exc)
        return None
