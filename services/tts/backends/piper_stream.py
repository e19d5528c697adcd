"""A piper voice run in three parts, so a sentence's first audio does not wait for all of its audio.

A piper voice is one ONNX graph (VITS): a text encoder and a duration
predictor turn phoneme ids into prior frames (256 samples of audio each), a
flow turns those into latent frames, and a HiFi-GAN decoder turns the latent
frames into audio. The flow and the decoder are about 80% of a sentence's
cost and grow with its length, while their convolutions only look a few
frames either side. So the graph is cut in front of the flow and in front of
the decoder once, when the voice loads (all parts come from the same
``.onnx`` file), and each sentence is decoded in chunks of growing size
(``CHUNK_ENDS``): the first 12 frames (139 ms of audio at 22050 Hz) go out
while the next 28 are decoded, and the rest is decoded while those play. A chunk's decoder borrows ``CONTEXT_FRAMES`` latent frames on
either side, and the flow that makes them ``FLOW_CONTEXT_FRAMES`` more; only
the chunk's own samples are kept. With 12 and 40 the chunked audio matched
the whole graph's to within 1e-6 on en_US-joe-medium (8 decoder frames left
errors of 1e-3, 16 flow frames 7e-3).

Cutting needs the ``onnx`` package and a graph laid out as piper's exporter
makes it (``/flow/...`` and ``/dec/conv_pre/Conv``); a voice whose graph is
not, or a voice with several speakers (its flow and decoder also take the
speaker), runs whole.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# Where a sentence's chunks end, in frames (256 samples each, 11.6 ms at 22050 Hz). The first chunk is short; the
# second is decoded while the first plays and the rest while the second plays. With (12, 40) the next chunk came
# ~100 ms before the audio ran out on a loaded 2-core machine (load 2.3, one thread); with (8, 32) first audio
# came 4 ms sooner, but the second chunk was late by up to 40 ms in one sentence out of eight.
CHUNK_ENDS = (12, 40)
FIRST_FRAMES = CHUNK_ENDS[0]
CONTEXT_FRAMES = 12
FLOW_CONTEXT_FRAMES = 40
DECODER_ENTRY = "/dec/conv_pre/Conv"  # the decoder's first node in piper's exported graphs
FLOW_PREFIX = "/flow/"
# piper's raw output peaks at 0.4-0.75 (0.25 for "Hmm."). One gain for every chunk, since a sentence's peak is
# not known before its last chunk is decoded; samples past full scale are clipped when converted to PCM.
GAIN = 1.3


@dataclass(frozen=True)
class SplitVoice:
    """One piper graph in three parts: phoneme ids -> prior frames and their mask, -> latent frames, -> audio."""

    encoder: Any  # onnxruntime.InferenceSession
    flow: Any
    decoder: Any
    prior: str  # the flow's input, (1, channels, frames)
    mask: str  # the frames' mask, (1, 1, frames): all ones for one sentence
    latent: str  # the decoder's input: the flow's frames times the mask

    def frames(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The prior frames of one sentence and their mask (from the whole graph's inputs)."""
        prior, mask = self.encoder.run(None, inputs)
        return prior, mask

    def decode(self, frames: tuple[np.ndarray, np.ndarray], start: int, end: int) -> np.ndarray:
        """Audio of frames ``start``..``end``: the flow and the decoder run with their context on either side."""
        prior, mask = frames
        total = prior.shape[2]
        lo, hi = max(0, start - CONTEXT_FRAMES), min(total, end + CONTEXT_FRAMES)
        flow_lo, flow_hi = max(0, lo - FLOW_CONTEXT_FRAMES), min(total, hi + FLOW_CONTEXT_FRAMES)
        latent = self.flow.run(None, {self.prior: prior[:, :, flow_lo:flow_hi], self.mask: mask[:, :, flow_lo:flow_hi]})[0]
        latent = np.ascontiguousarray(latent[:, :, lo - flow_lo : hi - flow_lo])
        audio = np.asarray(self.decoder.run(None, {self.latent: latent})[0], dtype=np.float32).reshape(-1)
        hop = len(audio) // (hi - lo)
        return audio[(start - lo) * hop : (end - lo) * hop]


def chunk_bounds(frames: int) -> list[tuple[int, int]]:
    """The chunks a sentence of ``frames`` frames is decoded in: ending at each of ``CHUNK_ENDS``, then the rest.

    A chunk boundary is kept only when more than ``CONTEXT_FRAMES`` follow it: a shorter rest would cost more
    in context than it saves.
    """
    bounds, start = [], 0
    for end in CHUNK_ENDS:
        if frames - end <= CONTEXT_FRAMES:
            break
        bounds.append((start, end))
        start = end
    return [*bounds, (start, frames)]


def split_voice(model: Path, make_session: Any) -> SplitVoice | None:
    """The voice's graph cut in front of its flow and its decoder, or None (with the reason logged).

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
    producers = {out: node for node in graph.node for out in node.output}
    entry = next((node for node in graph.node if node.name == DECODER_ENTRY), None)
    first_flow = next((node for node in graph.node if node.name.startswith(FLOW_PREFIX)), None)
    masking = producers.get(entry.input[0]) if entry is not None else None  # latent = flow output * mask
    if "sid" in inputs or entry is None or first_flow is None or masking is None or len(masking.input) != 2 \
            or len(graph.output) != 1:
        log.info("piper voice %s runs whole: %s", model.name,
                 "it has several speakers" if "sid" in inputs else "its graph is not laid out as piper exports it")
        return None
    prior, mask, latent = first_flow.input[0], masking.input[1], entry.input[0]
    try:
        extractor = onnx.utils.Extractor(graph_model)
        parts = (extractor.extract_model(inputs, [prior, mask]), extractor.extract_model([prior, mask], [latent]),
                 extractor.extract_model([latent], [graph.output[0].name]))
        # onnx's checker would refuse the parts (the cut tensors have no declared shapes); onnxruntime checks
        # them as it loads them, and refuses a part that needs an input it was not given.
        encoder, flow, decoder = (make_session(part.SerializeToString()) for part in parts)
    except Exception as exc:  # onnx and onnxruntime raise their own classes for a graph they cannot cut or load
        log.info("piper voice %s runs whole: its graph cannot be cut in front of its flow and decoder (%s)",
                 model.name, exc)
        return None
    return SplitVoice(encoder, flow, decoder, prior=prior, mask=mask, latent=latent)
