"""``voicemesh up --wyoming``: a Wyoming server beside the mesh, calling it with the local key."""

from __future__ import annotations

import asyncio

import pytest
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.info import Describe

from voicemesh.edges.wyoming.probe import describe
from voicemesh.process import ServiceProcess

pytestmark = pytest.mark.slow


async def test_up_runs_a_wyoming_server_that_calls_the_mesh_with_the_local_key(edge_mesh, tmp_path):
    assert f"Wyoming (Home Assistant) at tcp://127.0.0.1:{edge_mesh.wyoming_port}" in edge_mesh.up.output()
    info = describe(f"127.0.0.1:{edge_mesh.wyoming_port}")
    assert info is not None
    assert "faster-whisper/tiny.en:en" in [m["name"] for m in info["asr"][0]["models"]]
    assert "piper/en_US-joe-medium" in [v["name"] for v in info["tts"][0]["voices"]]
    # The mesh has API keys on: the same server with a wrong key is refused, and says so in an error event.
    (tmp_path / "wrong-key").write_text("vm_nokey_wrong\n")
    server = ServiceProcess("wyoming", args=["--mesh", str(edge_mesh.up.state_dir / "mesh.json"),
                                             "--api-key-file", str(tmp_path / "wrong-key")],
                            log_path=tmp_path / "wyoming.log").start()
    try:
        for _ in range(100):
            try:
                async with AsyncTcpClient(server.host, server.port, read_timeout=30) as conn:
                    await conn.write_event(Describe().event())
                    event = await conn.read_event()
                break
            except OSError:
                await asyncio.sleep(0.2)
        assert event is not None and Error.is_type(event.type), event
        error = Error.from_event(event)
        assert error.code == "UNAUTHENTICATED" and "refused this server's key" in error.text
    finally:
        server.stop()
