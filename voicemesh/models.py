"""The user's own model files: where they live and how big they are.

Every local backend scans one folder (``--models-dir``, default
``<state dir>/models``) as well as the installed weights packages; each backend
decides which files are its own (``*.gguf``, CTranslate2 whisper folders,
piper ``.onnx`` + ``.onnx.json``). Scanning reads names and small headers only,
never weights.
"""

from __future__ import annotations

from pathlib import Path

from voicemesh.backend import BackendSettings
from voicemesh.metering.ledger import state_dir


def models_dir(settings: BackendSettings) -> Path:
    """The models folder these settings name (it need not exist)."""
    folder = getattr(settings, "models_dir", "") or ""
    return Path(folder).expanduser() if folder else state_dir() / "models"


def size_of(path: Path) -> int:
    """Bytes of a file, or of every file under a folder; 0 for what cannot be read."""
    try:
        if path.is_dir():
            return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())
        return path.stat().st_size
    except OSError:
        return 0


def entries(settings: BackendSettings, pattern: str) -> list[Path]:
    """Entries of the models folder matching ``pattern``, sorted; none when it does not exist or cannot be read."""
    folder = models_dir(settings)
    try:
        return sorted(folder.glob(pattern)) if folder.is_dir() else []
    except OSError:
        return []
