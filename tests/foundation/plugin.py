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
    """Test providers: a backend whose load waits for a file to appear, and one with a setting of its own."""
    import asyncio
    import os
    from dataclasses import dataclass
    from pathlib import Path

    from voicemesh.backend import Backend, ModelCard
    from voicemesh.services.llm.backend import Done, FinishReason, LlmBackend, LlmSettings, TextDelta, TokenUsage
    from voicemesh.settings import setting


    class GatedBackend(Backend):
        provider = "gated"

        @classmethod
        def catalog(cls, settings):
            return [ModelCard(descriptor="gated/model", description="loads when $GATE_FILE exists")]

        async def load(self):
            gate = Path(os.environ["GATE_FILE"])
            while not gate.exists():
                await asyncio.sleep(0.05)


    @dataclass(frozen=True)
    class GreeterSettings(LlmSettings):
        greeter_greeting: str = setting("hello", "what every answer of the greeter backend says")


    class GreeterBackend(LlmBackend):
        """Answers every turn with the greeting its operator set."""

        provider = "greeter"
        settings_type = GreeterSettings

        @classmethod
        def catalog(cls, settings):
            return [ModelCard(descriptor="greeter/model", description=f"says {settings.greeter_greeting!r}")]

        async def generate(self, request, *, session, cancel):
            yield TextDelta(self.settings.greeter_greeting)
            yield Done(FinishReason.STOP, TokenUsage())
    '''
)


def install(path: Path, modalities: tuple[str, ...] = ("stt", "llm", "tts")) -> Path:
    """Write the test distribution into ``path`` and return ``path``."""
    (path / f"{MODULE}.py").write_text(SOURCE)
    info = path / f"{MODULE}-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {MODULE}\nVersion: 1.0\n")
    groups = "".join(f"[voicemesh.{m}]\ngated = {MODULE}:GatedBackend\n"
                     + (f"greeter = {MODULE}:GreeterBackend\n" if m == "llm" else "") + "\n" for m in modalities)
    (info / "entry_points.txt").write_text(groups)
    return path
