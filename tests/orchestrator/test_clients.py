"""Name resolution of the mesh's addresses never makes a session wait on DNS."""

from __future__ import annotations

import asyncio
import threading

from voicemesh.mesh import MeshConfig
from voicemesh.orchestrator import clients as clients_module
from voicemesh.orchestrator.clients import MeshClients
from voicemesh.orchestrator.fallback import Candidate


async def test_a_stale_name_is_resolved_again_in_a_thread_while_the_last_answer_serves(monkeypatch):
    answers = {"llm:50062": ["10.0.0.1:50062"]}
    calls, finished = [], []
    dns_answers = threading.Event()  # a DNS server that answers only when the test lets it
    dns_answers.set()

    def slow_resolve(address: str) -> list[str]:
        calls.append(address)
        dns_answers.wait(30)
        finished.append(address)
        return list(answers[address])

    monkeypatch.setattr(clients_module, "replicas", slow_resolve)
    mesh = MeshClients(MeshConfig({"llm": {"*": ["llm:50062"]}}))
    await mesh.resolve_all()  # at start, off the loop
    assert calls == finished == ["llm:50062"]
    llm = [Candidate("llama.cpp/m", "llama.cpp")]
    assert [t.address for t in mesh.targets("llm", llm)] == ["10.0.0.1:50062"]

    monkeypatch.setattr(clients_module, "RESOLVE_TTL_S", 0.0)  # every answer is stale now
    answers["llm:50062"] = ["10.0.0.1:50062", "10.0.0.2:50062"]  # the service was scaled up
    dns_answers.clear()  # and the DNS server hangs
    stale = mesh.targets("llm", llm)
    # targets() came back while the new resolution is still stuck in its thread: the loop never waited for it.
    assert [t.address for t in stale] == ["10.0.0.1:50062"]
    mesh.targets("llm", llm)  # one refresh at a time
    assert len(finished) == 1
    dns_answers.set()
    monkeypatch.setattr(clients_module, "RESOLVE_TTL_S", 60.0)  # what the refresh brings is fresh: no further one
    for _ in range(500):
        found = sorted(t.address for t in mesh.targets("llm", llm))
        if len(found) == 2:
            break
        await asyncio.sleep(0.01)
    assert found == ["10.0.0.1:50062", "10.0.0.2:50062"]
    assert calls == ["llm:50062"] * 2  # two stale lookups, one resolution
    await mesh.close()
