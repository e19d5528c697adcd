"""Fixtures the provider tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.providers.helpers import SttDouble


@pytest.fixture(scope="module")
def double() -> Iterator[SttDouble]:
    """The STT double (Deepgram and AssemblyAI) in a child process, one per test module."""
    server = SttDouble()
    yield server
    server.stop()
