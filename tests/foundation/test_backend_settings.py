"""A backend declares its own settings: a third-party plugin's setting shows in ``serve X --help`` and reaches
the backend in a real service process, from the environment and from a flag (issue 19, typed backend options)."""

from __future__ import annotations

import os
import subprocess
import sys

import grpc

from tests.foundation import plugin
from tests.llm.chat import Chat, user
from voicemesh.v1 import llm_pb2, llm_pb2_grpc


def plugin_env(path, **values: str) -> dict[str, str]:
    return {"PYTHONPATH": f"{path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **values}


def answer(address: str) -> str:
    with Chat(address, "greeter/model") as chat:
        return chat.turn("t", [user("Hi")]).text


def describe(address: str) -> str:
    with grpc.insecure_channel(address) as channel:
        response = llm_pb2_grpc.LlmServiceStub(channel).Describe(llm_pb2.LlmServiceDescribeRequest(), timeout=30)
    (card,) = [m for m in response.description.models if m.descriptor == "greeter/model"]
    return card.description


def test_a_plugin_setting_shows_in_serve_help(tmp_path):
    plugin.install(tmp_path)
    result = subprocess.run([sys.executable, "-m", "voicemesh.cli", "serve", "llm", "--help"], capture_output=True,
                            text=True, timeout=60, env={**os.environ, **plugin_env(tmp_path)})
    assert result.returncode == 0, result.stderr
    help_text = " ".join(result.stdout.split())
    assert "--greeter-greeting GREETER_GREETING what every answer of the greeter backend says" in help_text
    assert "[env VOICEMESH_GREETER_GREETING; default 'hello']" in help_text
    assert "--llama-threads" in help_text  # the built-in backends' settings are declared the same way


def test_a_plugin_setting_reaches_its_backend_from_the_environment_and_from_a_flag(service_process, tmp_path):
    plugin.install(tmp_path)
    env = plugin_env(tmp_path, VOICEMESH_GREETER_GREETING="good morning")
    from_env = service_process("llm", env=env)
    assert answer(from_env.address) == "good morning"
    assert describe(from_env.address) == "says 'good morning'"
    from_flag = service_process("llm", args=["--greeter-greeting", "good evening"], env=env)  # the flag wins
    assert answer(from_flag.address) == "good evening"
