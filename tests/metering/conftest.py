"""Fixtures of the metering tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.metering.helpers import Mesh


@pytest.fixture(scope="session")
def mesh(tmp_path_factory) -> Iterator[Mesh]:
    """STT, LLM and TTS processes (real models) sharing one SQLite ledger; orchestrators on demand."""
    folder = tmp_path_factory.mktemp("metered-mesh")
    mesh = Mesh(folder, f"sqlite:///{folder}/ledger.db")
    try:
        yield mesh.start()
    finally:
        mesh.stop()
