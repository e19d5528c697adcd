"""The documented backend swap, run for real: the llm service's environment is
taken from `docker-compose --env-file llm-remote.env config` (base URL and API
key of an OpenAI-compatible API, no local model), and the LLM process started
with it answers an orchestrator session through the real llama.cpp
OpenAI-compatible server, while STT, TTS and the orchestrator stay as they
were. A key the server refuses, swapped in the same way, turns into a clear
error event."""

from __future__ import annotations

import pytest

from tests.deploy.mesh import RATE, STT, metric, start, text_turn
from tests.deploy.test_compose import resolved
from tests.llm.test_remote import API_KEY, llama_server  # noqa: F401 - the fixture
from voicemesh.client import AgentSession
from voicemesh.process import ServiceProcess, free_port

pytestmark = pytest.mark.slow

TTS = "piper/en_US-joe-medium"


def llm_environment(tmp_path, base_url: str, api_key: str) -> dict[str, str]:
    """The llm service's environment as docker-compose resolves it with the env file."""
    env_file = tmp_path / "llm-remote.env"
    env_file.write_text(f"LLM_PRELOAD=\nLLM_OPENAI_BASE_URL={base_url}\nLLM_OPENAI_API_KEY={api_key}\n")
    environment = resolved("--env-file", str(env_file))["services"]["llm"]["environment"]
    return {name: str(value) for name, value in environment.items()}


async def test_llm_swapped_to_an_openai_compatible_api_by_env_file(tmp_path, llama_server, monkeypatch):  # noqa: F811
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "VOICEMESH_OPENAI_BASE_URL", "VOICEMESH_OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    llm_port = free_port()
    stt, _ = start("stt", tmp_path)
    tts, _ = start("tts", tmp_path, "--preload", TTS)
    env = llm_environment(tmp_path, llama_server, API_KEY)
    llm = ServiceProcess("llm", port=llm_port, args=["--metrics-port", str(llm_metrics := free_port())], env=env,
                         log_path=tmp_path / "llm-remote.log")
    procs = [stt, tts, llm.start()]
    try:
        for proc in procs:
            proc.wait_serving()
        orchestrator = ServiceProcess(
            "orchestrator", args=["--metrics-port", "-1", "--max-tokens", "24"], log_path=tmp_path / "orchestrator.log",
            env={"VOICEMESH_MESH_STT": stt.address, "VOICEMESH_MESH_LLM": llm.address,
                 "VOICEMESH_MESH_TTS": tts.address})
        procs.append(orchestrator.start())
        orchestrator.wait_serving()
        pids = {p.service: p.proc.pid for p in (stt, tts, orchestrator)}

        async with AgentSession(address=orchestrator.address, stt=STT, llm="openai/smollm2", tts=TTS,
                                input_sample_rate=RATE, output_sample_rate=RATE,
                                first_result_timeout_ms=20000) as session:
            turn = await text_turn(session, "What is the capital of France?")
            assert turn.text and turn.audio_s > 0 and not turn.errors, turn
            assert metric(llm_metrics, "voicemesh_rpcs_total", method="Chat") + \
                metric(llm_metrics, "voicemesh_streams_open", method="Chat") >= 1
            assert "llama.cpp" not in llm.log_tail(200)  # no local model was loaded

            # Swap the llm service again, now with a key the API refuses.
            llm.stop()
            env = llm_environment(tmp_path, llama_server, "not-the-key")
            llm = ServiceProcess("llm", port=llm_port, args=["--metrics-port", "-1"], env=env,
                                 log_path=tmp_path / "llm-bad-key.log")
            procs.append(llm.start())
            llm.wait_serving()
            refused = await text_turn(session, "And of Italy?")
            # The error event names the remote's refusal (the orchestrator reports the turn's
            # failure as a whole, with each target's status in the message).
            assert any("UNAUTHENTICATED" in e.message for e in refused.errors), refused.errors
            assert not refused.audio
        assert {p.service: p.proc.pid for p in (stt, tts, orchestrator)} == pids
    finally:
        for proc in reversed(procs):
            proc.stop()
