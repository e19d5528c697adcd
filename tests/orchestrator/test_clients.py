"""Name resolution of the mesh's addresses never makes a session wait on DNS."""

from __future__ import annotations

import asyncio
import time

from voicemesh.mesh import MeshConfig
from voicemesh.orchestrator import clients as clients_module
from voicemesh.orchestrator.clients import MeshClients
from voicemesh.orchestrator.fallback import Candidate


async def test_a_stale_name_is_resolved_again_in_a_thread_while_the_last_answer_serves(monkeypatch):
    answers = {"llm:50062": ["10.0.0.1:50062"]}
    calls = []

    def slow_resolve(address: str) -> list[str]:
        calls.append(address)
        time.sleep(0.5)  # a slow DNS server
        return list(answers[address])

    monkeypatch.setattr(clients_module, "replicas", slow_resolve)
    mesh = MeshClients(MeshConfig({"llm": {"*": ["llm:50062"]}}))
    await mesh.resolve_all()  # at start, off the loop
    assert calls == ["llm:50062"]
    llm = [Candidate("llama.cpp/m", "llama.cpp")]
    assert [t.address for t in mesh.targets("llm", llm)] == ["10.0.0.1:50062"]

    monkeypatch.setattr(clients_module, "RESOLVE_TTL_S", 0.0)  # every answer is stale now
    answers["llm:50062"] = ["10.0.0.1:50062", "10.0.0.2:50062"]  # the service was scaled up
    started = time.monotonic()
    stale = mesh.targets("llm", llm)
    assert time.monotonic() - started < 0.1  # the loop did not wait for the slow DNS server
    assert [t.address for t in stale] == ["10.0.0.1:50062"]
    mesh.targets("llm", llm)  # one refresh at a time
    assert calls == ["llm:50062", "llm:50062"]
    await asyncio.sleep(0.8)
    monkeypatch.setattr(clients_module, "RESOLVE_TTL_S", 60.0)  # fresh again: no further refresh
    assert sorted(t.address for t in mesh.targets("llm", llm)) == ["10.0.0.1:50062", "10.0.0.2:50062"]
    await mesh.close()
