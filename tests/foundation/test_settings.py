import argparse
import subprocess
import sys
from dataclasses import dataclass

import pytest

from voicemesh.runtime.server import ServerSettings
from voicemesh.settings import add_arguments, from_env, from_namespace, setting


@dataclass
class Example(ServerSettings):
    model: str = setting("piper/en_US-joe-medium", "default voice")
    workers: int = setting(2, "worker threads")
    warm: bool = setting(True, "preload")


def parse(argv, env, monkeypatch):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    parser = argparse.ArgumentParser()
    add_arguments(parser, Example)
    return from_namespace(Example, parser.parse_args(argv))


def test_defaults(monkeypatch):
    s = parse([], {}, monkeypatch)
    assert (s.port, s.workers, s.warm, s.model) == (50051, 2, True, "piper/en_US-joe-medium")


def test_environment_then_flags(monkeypatch):
    s = parse([], {"VOICEMESH_PORT": "6000", "VOICEMESH_WORKERS": "4", "VOICEMESH_WARM": "false"}, monkeypatch)
    assert (s.port, s.workers, s.warm) == (6000, 4, False)
    s = parse(["--port", "7000", "--warm"], {"VOICEMESH_PORT": "6000", "VOICEMESH_WARM": "0"}, monkeypatch)
    assert (s.port, s.warm) == (7000, True)


def test_bad_values_are_rejected(monkeypatch):
    with pytest.raises(SystemExit):
        parse(["--port", "abc"], {}, monkeypatch)
    with pytest.raises(SystemExit):
        parse([], {"VOICEMESH_WARM": "maybe"}, monkeypatch)
    with pytest.raises(SystemExit):
        parse(["--log-level", "LOUD"], {}, monkeypatch)


def test_from_env(monkeypatch):
    monkeypatch.setenv("VOICEMESH_WORKERS", "3")
    assert from_env(Example, port=1).workers == 3
    assert from_env(Example, port=1).port == 1


@pytest.mark.parametrize(("service", "flag", "value", "says"), [
    ("orchestrator", "--max-machine-cpu", "80", "max_machine_cpu (--max-machine-cpu) is a share of the CPU"),
    ("tts", "--chunk-ms", "250", "chunk_ms must be between 10 and 100, got 250"),
])
def test_a_setting_out_of_its_range_is_a_usage_error_not_a_traceback(service, flag, value, says):
    result = subprocess.run([sys.executable, "-m", "voicemesh.cli", "serve", service, "--port", "0",
                             "--metrics-port", "-1", flag, value], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"voicemesh serve {service}: error: {says}" in result.stderr
    assert "Traceback" not in result.stderr
