"""A third-party test package that adds providers through entry points only.

``install(path)`` writes a real distribution (a module plus its .dist-info
with entry_points.txt) into ``path``; putting ``path`` on sys.path or
PYTHONPATH makes importlib.metadata (and so the VoiceMesh registry) find it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

MODULE = "voicemesh_testplugin"

SOURCE = textwrap.dedent(
    '''
    """Test providers: a backend whose load waits for a file to appear."""
    import asyncio
    import os
    from pathlib import Path

    from voicemesh.backend import Backend, ModelCard


    class GatedBackend(Backend):
        provider = "gated"

        @classmethod
        def catalog(cls, settings):
            return [ModelCard(descriptor="gated/model", description="loads when $GATE_FILE exists")]

        async def load(self):
            gate = Path(os.environ["GATE_FILE"])
            while not gate.exists():
                await asyncio.sleep(0.05)
    '''
)


def install(path: Path, modalities: tuple[str, ...] = ("stt", "llm", "tts")) -> Path:
    """Write the test distribution into ``path`` and return ``path``."""
    (path / f"{MODULE}.py").write_text(SOURCE)
    info = path / f"{MODULE}-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {MODULE}\nVersion: 1.0\n")
    groups = "".join(f"[voicemesh.{m}]\ngated = {MODULE}:GatedBackend\n\n" for m in modalities)
    (info / "entry_points.txt").write_text(groups)
    return path
