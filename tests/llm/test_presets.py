"""OpenAI-compatible presets (``groq/…`` and the others): a preset answers from its operator URL with
its provider's own key variable, against the real llama.cpp server on loopback."""

from __future__ import annotations

import grpc
import pytest

from tests.llm.chat import Chat, user
from tests.llm.test_local import QUESTION
from tests.llm.test_remote import API_KEY, GREEDY, llama_server  # noqa: F401 - the fixture
from voicemesh import targets
from voicemesh.backend import RemoteOptions
from voicemesh.services.llm.backends import presets
from voicemesh.errors import PermissionDenied
from voicemesh.v1 import llm_pb2, llm_pb2_grpc

pytestmark = pytest.mark.slow


def test_groq_preset_answers_with_only_its_own_key_variable(service_process, llama_server):  # noqa: F811
    env = {"VOICEMESH_GROQ_BASE_URL": llama_server, "GROQ_API_KEY": API_KEY,
           "OPENAI_API_KEY": "", "VOICEMESH_GROQ_API_KEY": "", "VOICEMESH_OPENAI_API_KEY": ""}
    llm = service_process("llm", env=env)
    with Chat(llm.address, "groq/llama-3.3-70b-versatile", sampling=GREEDY) as chat:
        turn = chat.turn("t1", [user(QUESTION)])
    assert "paris" in turn.text.lower() and turn.reason == "FINISH_REASON_STOP"
    assert turn.done.usage.model == "groq/llama-3.3-70b-versatile"

    # The same server without the key: the remote's 401 is UNAUTHENTICATED, so the key above did the work.
    keyless = service_process("llm", env={**env, "GROQ_API_KEY": ""})
    with Chat(keyless.address, "groq/llama-3.3-70b-versatile") as chat:
        chat.generate("g", [user(QUESTION)])
        with pytest.raises(grpc.RpcError) as info:
            while True:
                chat.next()
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_every_preset_is_registered_and_described(service_process):
    llm = service_process("llm")
    with grpc.insecure_channel(llm.address) as channel:
        models = llm_pb2_grpc.LlmServiceStub(channel).Describe(llm_pb2.LlmServiceDescribeRequest()).description.models
    described = {m.descriptor.split("/")[0] for m in models}
    assert set(presets.PRESETS) <= described


def test_preset_key_order_and_client_urls_still_need_the_allowlist(monkeypatch):
    groq = presets.groq
    monkeypatch.delenv("VOICEMESH_GROQ_BASE_URL", raising=False)
    monkeypatch.setenv("GROQ_API_KEY", "from-groq")
    monkeypatch.delenv("VOICEMESH_GROQ_API_KEY", raising=False)
    resolved = groq.accept_options(RemoteOptions(), groq.settings_type(), None)
    assert (resolved.base_url, resolved.api_key) == ("https://api.groq.com/openai/v1", "from-groq")
    monkeypatch.setenv("VOICEMESH_GROQ_API_KEY", "from-voicemesh")
    assert groq.accept_options(RemoteOptions(), groq.settings_type(), None).api_key == "from-voicemesh"
    with pytest.raises(PermissionDenied):
        groq.accept_options(RemoteOptions(base_url="http://10.0.0.1/v1"), groq.settings_type(), targets.Allowlist())
