"""A piper voice run in three parts, so a sentence's first audio does not wait for all of its audio.

A piper voice is one ONNX graph (VITS): a text encoder and a duration
predictor turn phoneme ids into prior frames (256 samples of audio each), a
flow turns those into latent frames, and a HiFi-GAN decoder turns the latent
frames into audio. The flow and the decoder are about 80% of a sentence's
cost and grow with its length, while their convolutions only look a few
frames either side. So the graph is cut in front of the flow and in front of
the decoder once, when the voice loads (all parts come from the same
``.onnx`` file), and each sentence is decoded in chunks of growing size
(``CHUNK_ENDS``): the first 8 frames (93 ms of audio at 22050 Hz) go out
while the next 16 are decoded, and each later chunk is decoded while the
ones before it play.
A chunk's decoder borrows ``CONTEXT_FRAMES`` latent frames on either side,
and the flow that makes them ``FLOW_CONTEXT_FRAMES`` more; only the chunk's
own samples are kept. With 10 and 24 the chunked audio matched the whole
graph's to within 1.4e-5 on en_US-joe-medium, under one step of 16-bit PCM
(3e-5); 8 decoder frames left errors of 2e-3. Other voices' decoders may
look further, so each voice is checked when it loads and falls back to
``WIDE_CONTEXT`` when the chunks do not match (``SplitVoice.checked``).

Cutting needs the ``onnx`` package (in a child process, once per voice file:
the parts are cached, see ``split_voice``) and a graph laid out as piper's exporter
makes it (``/flow/...`` and ``/dec/conv_pre/Conv``); a voice whose graph is
not, or a voice with several speakers (its flow and decoder also take the
speaker), runs whole.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# Where a sentence's chunks end, in frames (256 samples each, 11.6 ms at 22050 Hz). The first chunk is short, and
# each chunk is decoded while the ones before it play: the second (16 frames) takes ~21 ms on one idle thread
# against the first one's 93 ms of audio, as (12, 40) did against 139 ms. (8, 32) had left the second chunk late
# by up to 40 ms in one sentence out of eight on a loaded 2-core machine: it took 32 frames at once.
CHUNK_ENDS = (8, 24, 56)
FIRST_FRAMES = CHUNK_ENDS[0]
CONTEXT_FRAMES = 10
FLOW_CONTEXT_FRAMES = 24
WIDE_CONTEXT = (16, 48)  # decoder and flow context for a voice whose chunks do not match with the narrow ones
MAX_CHUNK_ERROR = 1e-4  # three steps of 16-bit PCM: chunked audio further from the whole graph's is not used
# Long enough to cross every chunk boundary (~140 frames), short enough that decoding it whole at load leaves
# little in onnxruntime's memory arena (a 4 s sentence kept ~55 MB more resident).
CHECK_SENTENCE = "The weather is lovely today."
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
    context: int = CONTEXT_FRAMES  # latent frames the decoder borrows on either side of a chunk
    flow_context: int = FLOW_CONTEXT_FRAMES  # prior frames the flow borrows beyond those

    def frames(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The prior frames of one sentence and their mask (from the whole graph's inputs)."""
        prior, mask = self.encoder.run(None, inputs)
        return prior, mask

    def decode(self, frames: tuple[np.ndarray, np.ndarray], start: int, end: int) -> np.ndarray:
        """Audio of frames ``start``..``end``: the flow and the decoder run with their context on either side."""
        prior, mask = frames
        total = prior.shape[2]
        lo, hi = max(0, start - self.context), min(total, end + self.context)
        flow_lo, flow_hi = max(0, lo - self.flow_context), min(total, hi + self.flow_context)
        window = {self.prior: prior[:, :, flow_lo:flow_hi], self.mask: mask[:, :, flow_lo:flow_hi]}
        latent = self.flow.run(None, window)[0]
        latent = np.ascontiguousarray(latent[:, :, lo - flow_lo : hi - flow_lo])
        audio = np.asarray(self.decoder.run(None, {self.latent: latent})[0], dtype=np.float32).reshape(-1)
        hop = len(audio) // (hi - lo)
        return audio[(start - lo) * hop : (end - lo) * hop]

    def chunks(self, frames: int) -> list[tuple[int, int]]:
        """The chunks a sentence of ``frames`` frames is decoded in (``chunk_bounds`` with this voice's context)."""
        return chunk_bounds(frames, self.context)

    def error(self, inputs: dict[str, np.ndarray]) -> float:
        """Largest difference between the sentence of ``inputs`` decoded in chunks and decoded whole."""
        frames = self.frames(inputs)
        total = frames[0].shape[2]
        chunked = np.concatenate([self.decode(frames, start, end) for start, end in self.chunks(total)])
        return float(np.max(np.abs(chunked - self.decode(frames, 0, total))))

    def checked(self, inputs: dict[str, np.ndarray], model: str, tolerance: float = MAX_CHUNK_ERROR) -> SplitVoice:
        """This voice with contexts whose chunks match the whole graph on ``inputs`` (a sentence without noise):
        the narrow ones when they do, else ``WIDE_CONTEXT`` (logged)."""
        error = self.error(inputs)
        if error <= tolerance:
            return self
        wide = dataclasses.replace(self, context=WIDE_CONTEXT[0], flow_context=WIDE_CONTEXT[1])
        log.warning("piper voice %s: chunks decoded with %d+%d frames of context differ from the whole sentence by "
                    "%.1e, so it borrows %d+%d (first audio a few ms later; off by %.1e)", model, self.context,
                    self.flow_context, error, *WIDE_CONTEXT, wide.error(inputs))
        return wide


def chunk_bounds(frames: int, context: int = CONTEXT_FRAMES) -> list[tuple[int, int]]:
    """The chunks a sentence of ``frames`` frames is decoded in: ending at each of ``CHUNK_ENDS``, then the rest.

    A chunk boundary is kept only when more than ``context`` frames follow it: a shorter rest would cost more
    in context than it saves.
    """
    bounds, start = [], 0
    for end in CHUNK_ENDS:
        if frames - end <= context:
            break
        bounds.append((start, end))
        start = end
    return [*bounds, (start, frames)]


def split_voice(model: Path, make_session: Any) -> SplitVoice | None:
    """The voice's graph cut in front of its flow and its decoder, or None (with the reason logged).

    The cut runs in a child process and its three parts are kept as files in a cache folder (``parts_folder``),
    so the service never imports onnx nor holds the parsed graph: loaded from files, the three sessions take
    about what the whole graph's session takes (loaded from bytes, or next to onnx's objects, 70-150 MB more).
    ``make_session`` turns a model file's path into an onnxruntime session with the backend's options.
    """
    if importlib.util.find_spec("onnx") is None:
        log.warning("piper voice %s runs whole: the onnx package is missing (pip install 'voicemesh[tts]'), so "
                    "each sentence's first audio waits for all of its audio", model.name)
        return None
    folder, scratch = parts_folder(model), None
    names = _read_names(folder)
    if names is None:
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        except OSError as exc:  # a read-only home: the parts live only until their sessions are loaded
            log.info("piper voice %s: no cache folder for its cut parts (%s), cutting it into a temporary one",
                     model.name, exc)
            work = folder = scratch = Path(tempfile.mkdtemp(prefix="voicemesh-piper-parts-"))
        names = _cut_in_child(model, work, folder)
    try:
        if names is None:
            return None
        encoder, flow, decoder = (make_session(str(folder / f"{part}.onnx")) for part in PARTS)
    except Exception as exc:  # onnxruntime raises its own classes for a part it cannot load
        log.info("piper voice %s runs whole: onnxruntime cannot load its cut parts in %s (%s)", model.name, folder,
                 exc)
        return None
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return SplitVoice(encoder, flow, decoder, **names)

PARTS = ("encoder", "flow", "decoder")
CUT_VERSION = 1  # part of the cache key: a change to how voices are cut makes new parts


def parts_folder(model: Path) -> Path:
    """Where the cut parts of ``model`` are kept: a per-user cache folder, named after the model file's path, size,
    modification time and ``CUT_VERSION`` (so a replaced voice file is cut again)."""
    stat = model.resolve().stat()
    key = f"{model.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{CUT_VERSION}"
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "voicemesh" / "piper-parts"
    return root / f"{model.stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _read_names(folder: Path) -> dict[str, str] | None:
    try:
        names = json.loads((folder / "names.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if all((folder / f"{part}.onnx").is_file() for part in PARTS):
        return {key: str(names[key]) for key in ("prior", "mask", "latent")}
    return None


def _cut_in_child(model: Path, work: Path, folder: Path) -> dict[str, str] | None:
    """Cut ``model`` into ``work`` with a child process, then move ``work`` to ``folder`` (unless they are one);
    the tensor names, or None when it cannot be cut."""
    try:
        done = subprocess.run([sys.executable, "-m", __name__, str(model), str(work)], capture_output=True,
                              text=True, timeout=300)
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
            log.info("piper voice %s runs whole: %s", model.name, reason)
            return None
        if work != folder:
            try:
                work.rename(folder)  # whole or not at all: a concurrent loader may have put its parts there first
            except OSError:
                pass
        return _read_names(folder)
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("piper voice %s runs whole: cutting its graph failed (%s)", model.name, exc)
        return None
    finally:
        if work != folder:
            shutil.rmtree(work, ignore_errors=True)


class CannotCut(Exception):
    """The graph is not laid out as piper exports a one-speaker voice."""


def cut(model: Path, out: Path) -> dict[str, str]:
    """Write the encoder, flow and decoder of ``model`` to ``out`` with the names of the tensors between them
    (runs in the child process: it imports onnx and holds the whole parsed graph)."""
    import onnx
    import onnx.utils

    graph_model = onnx.load(str(model))
    graph = graph_model.graph
    inputs = [i.name for i in graph.input]
    if "sid" in inputs:
        raise CannotCut("it has several speakers")
    producers = {output: node for node in graph.node for output in node.output}
    entry = next((node for node in graph.node if node.name == DECODER_ENTRY), None)
    first_flow = next((node for node in graph.node if node.name.startswith(FLOW_PREFIX)), None)
    masking = producers.get(entry.input[0]) if entry is not None else None  # latent = flow output * mask
    if first_flow is None or masking is None or len(masking.input) != 2 or len(graph.output) != 1:
        raise CannotCut("its graph is not laid out as piper exports it")
    names = {"prior": first_flow.input[0], "mask": masking.input[1], "latent": entry.input[0]}
    extractor = onnx.utils.Extractor(graph_model)
    parts = {"encoder": extractor.extract_model(inputs, [names["prior"], names["mask"]]),
             "flow": extractor.extract_model([names["prior"], names["mask"]], [names["latent"]]),
             "decoder": extractor.extract_model([names["latent"]], [graph.output[0].name])}
    # onnx's checker would refuse the parts (the cut tensors have no declared shapes); onnxruntime checks them as
    # it loads them, and refuses a part that needs an input it was not given.
    for part, part_model in parts.items():
        onnx.save(part_model, str(out / f"{part}.onnx"))
    (out / "names.json").write_text(json.dumps(names), encoding="utf-8")
    return names


if __name__ == "__main__":
    try:
        cut(Path(sys.argv[1]), Path(sys.argv[2]))
    except CannotCut as exc:
        sys.exit(str(exc))
