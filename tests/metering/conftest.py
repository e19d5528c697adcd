"""Fixtures of the metering tests."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

from tests.metering.helpers import Mesh
from tests.metering.postgres import PostgresServer, binaries
from voicemesh.metering.ledger import spool_path


@pytest.fixture(scope="session")
def mesh(tmp_path_factory) -> Iterator[Mesh]:
    """STT, LLM and TTS processes (real models) sharing one SQLite ledger; orchestrators on demand."""
    folder = tmp_path_factory.mktemp("metered-mesh")
    mesh = Mesh(folder, f"sqlite:///{folder}/ledger.db")
    try:
        yield mesh.start()
    finally:
        mesh.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server in a throwaway cluster (Debian's ``postgresql`` package), for the whole run."""
    bin_dir = binaries()
    if bin_dir is None or importlib.util.find_spec("psycopg") is None:
        pytest.skip("PostgreSQL or psycopg is missing: scripts/dev setup installs both")
    server = PostgresServer(bin_dir)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> Iterator[str]:
    """The URL (with its password) of a new empty database on the test server."""
    url = postgres_server.create_database()
    yield url
    spool = spool_path(url)  # a server ledger spools in the temp folder: leave none behind
    for path in spool.parent.glob(f"{spool.name}*"):
        path.unlink()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request, tmp_path) -> str:
    """A new empty ledger of each store: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    return request.getfixturevalue("postgres_url")
