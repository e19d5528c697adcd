"""What the metering tests share: a mesh of real services on one ledger, comparable usage."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.orchestrator.client import LLM, TTS
from voicemesh.mesh import MeshConfig
from voicemesh.process import ServiceProcess


def units(service: str, usage) -> tuple:
    """What a Usage (or a ledger record) says, comparable exactly."""
    return (service, usage.model, usage.audio_seconds_in, usage.audio_seconds_out, usage.input_tokens,
            usage.output_tokens, usage.cached_tokens, usage.characters)


class Mesh:
    """Model services with a ledger, and orchestrators started on demand over them."""

    def __init__(self, folder: Path, url: str):
        self.folder, self.url = folder, url
        self.env = {"VOICEMESH_LEDGER": url}
        args = {"stt": ["--workers", "1", "--threads", "1"],
                "llm": ["--preload", LLM, "--temperature", "0", "--llama-threads", "1"],
                "tts": ["--preload", TTS, "--piper-workers", "1"]}
        self.services = {name: ServiceProcess(name, args=["--metrics-port", "-1", *extra], env=self.env,
                                              log_path=folder / f"{name}.log") for name, extra in args.items()}
        self.orchestrators: list[ServiceProcess] = []

    def start(self) -> Mesh:
        for proc in self.services.values():
            proc.start()
        for proc in self.services.values():
            proc.wait_serving()
        MeshConfig({m: {"*": [p.address]} for m, p in self.services.items()}).write(self.folder / "mesh.json")
        return self

    def orchestrator(self) -> ServiceProcess:
        log_path = self.folder / f"orch-{len(self.orchestrators)}.log"
        proc = ServiceProcess("orchestrator", env=self.env, log_path=log_path,
                              args=["--metrics-port", "-1", "--mesh", str(self.folder / "mesh.json"),
                                    "--max-tokens", "40"])
        self.orchestrators.append(proc.start())
        return proc.wait_serving()

    def stop(self) -> None:
        for proc in [*self.orchestrators, *self.services.values()]:
            proc.stop()


def run_sql(url: str, sql: str) -> list[tuple]:
    """Run ``sql`` on the ledger database at ``url`` over a connection of its own (a change under a server)."""
    if url.startswith("sqlite://"):
        import sqlite3

        from voicemesh.metering.ledger import sqlite_path

        with sqlite3.connect(sqlite_path(url)) as db:
            return db.execute(sql).fetchall()
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        cursor = db.execute(sql)
        return cursor.fetchall() if cursor.description else []


async def recorded_usage(store, key_id: str, timeout_s: float = 10.0, settle_s: float = 1.0) -> list:
    """The key's usage records once there are any and they have settled: a service commits them a moment
    after the RPC ends, and a long stream's record grows while it runs (its last version lands as it ends)."""
    deadline = time.monotonic() + timeout_s
    records = store.usage(key_id=key_id)
    while not records and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        records = store.usage(key_id=key_id)
    stable_since = time.monotonic()
    while records and time.monotonic() - stable_since < settle_s and time.monotonic() < deadline + settle_s:
        await asyncio.sleep(0.05)
        again = store.usage(key_id=key_id)
        if again != records:
            records, stable_since = again, time.monotonic()
    return records
