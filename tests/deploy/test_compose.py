"""docker-compose.yml, checked by a compose implementation's own config check
(Debian's docker-compose; `scripts/dev setup` installs it when missing) and by
reading the resolved configuration it prints."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy import dockerfile
from voicemesh.mesh import DEFAULT_PORTS

ROOT = Path(__file__).resolve().parents[2]
MODEL_SERVICES = ("stt", "llm", "tts", "realtime", "avatar")
EDGES = {"wyoming": 10300}  # edge servers: clients of the mesh, each in a profile of its own


def compose(*args: str, compose_file: Path = ROOT / "docker-compose.yml",
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``docker-compose -f FILE ARGS``, with none of the stack's variables leaking in from this shell."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is not installed; `scripts/dev setup` installs Debian's package")
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("VOICEMESH_", "STT_", "LLM_", "TTS_", "REALTIME_", "AVATAR_", "COMPOSE_"))}
    return subprocess.run([binary, "--project-directory", str(compose_file.parent), "-f", str(compose_file), *args],
                          capture_output=True, text=True, env={**clean, **(env or {})}, timeout=120)


def resolved(*args: str, **kwargs) -> dict:
    result = compose(*args, "config", **kwargs)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def config() -> dict:
    return resolved()


def test_compose_config_check_passes():
    result = compose("config", "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_compose_config_check_rejects_a_broken_file(tmp_path):
    broken = (ROOT / "docker-compose.yml").read_text().replace("condition: service_healthy", "condition: healthy")
    (tmp_path / "docker-compose.yml").write_text(broken)
    result = compose("config", "--quiet", compose_file=tmp_path / "docker-compose.yml")
    assert result.returncode != 0
    assert "condition" in result.stderr


def test_the_five_services_and_the_edges_each_build_their_own_target(config):
    stages = dockerfile.load(ROOT / "Dockerfile")
    assert set(config["services"]) == set(DEFAULT_PORTS) | set(EDGES)
    for name, service in config["services"].items():
        assert service["build"]["target"] == name
        # depends_on ... service_healthy needs a health check; the image carries it.
        assert stages[name].last("HEALTHCHECK"), name


def test_only_the_orchestrator_and_the_edges_publish_a_port(config):
    published = {name: s.get("ports") for name, s in config["services"].items() if s.get("ports")}
    assert sorted(published) == sorted(["orchestrator", *EDGES])
    for name, port in {"orchestrator": DEFAULT_PORTS["orchestrator"], **EDGES}.items():
        (published_port,) = published[name]
        assert int(published_port["target"]) == port, name


def test_the_wyoming_edge_is_opt_in_and_calls_stt_and_tts_with_its_key(tmp_path):
    env_file = tmp_path / "wyoming.env"
    env_file.write_text("VOICEMESH_WYOMING_API_KEY=vm_abc_secret\nVOICEMESH_WYOMING_PORT=10400\n")
    wyoming = resolved("--env-file", str(env_file))["services"]["wyoming"]
    assert wyoming["profiles"] == ["wyoming"]  # `docker-compose up` alone does not start it
    assert wyoming["depends_on"] == {name: {"condition": "service_healthy"} for name in ("stt", "tts")}
    env = wyoming["environment"]
    assert (env["VOICEMESH_MESH_STT"], env["VOICEMESH_MESH_TTS"]) == ("stt:50061", "tts:50063")
    assert env["VOICEMESH_API_KEY"] == "vm_abc_secret"
    (port,) = wyoming["ports"]
    assert int(port["published"]) == 10400 and int(port["target"]) == EDGES["wyoming"]


def test_model_services_can_scale(config):
    # `docker-compose up --scale llm=2` fails on a fixed container name or a fixed host port.
    for name in MODEL_SERVICES:
        service = config["services"][name]
        assert "container_name" not in service and "ports" not in service, name


def test_orchestrator_starts_after_every_model_service_is_healthy(config):
    depends = config["services"]["orchestrator"]["depends_on"]
    assert depends == {name: {"condition": "service_healthy"} for name in MODEL_SERVICES}


def test_orchestrator_mesh_points_at_the_services_by_name(config):
    env = config["services"]["orchestrator"]["environment"]
    for name in MODEL_SERVICES:
        host, port = env[f"VOICEMESH_MESH_{name.upper()}"].split(":")
        assert host == name and int(port) == DEFAULT_PORTS[name]


def test_env_file_swaps_the_llm_backend_and_nothing_else(tmp_path, config):
    env_file = tmp_path / "llm-remote.env"
    env_file.write_text("LLM_PRELOAD=\n"
                        "LLM_OPENAI_BASE_URL=https://llm.example.com/v1\n"
                        "LLM_OPENAI_API_KEY=sk-test-123\n")
    swapped = resolved("--env-file", str(env_file))
    llm = swapped["services"]["llm"]["environment"]
    assert llm["VOICEMESH_OPENAI_BASE_URL"] == "https://llm.example.com/v1"
    assert llm["VOICEMESH_OPENAI_API_KEY"] == "sk-test-123"
    assert not llm["VOICEMESH_PRELOAD"]
    assert config["services"]["llm"]["environment"]["VOICEMESH_PRELOAD"] == "llama.cpp/smollm2-135m-instruct"
    for name in ("stt", "tts", "realtime", "avatar", "orchestrator"):
        assert swapped["services"][name] == config["services"][name], name


def test_default_preloads_are_the_local_models(config):
    preload = {name: config["services"][name]["environment"]["VOICEMESH_PRELOAD"]
               for name in ("stt", "llm", "tts", "realtime", "avatar")}
    assert preload == {"stt": "faster-whisper/tiny.en:en", "llm": "llama.cpp/smollm2-135m-instruct",
                       "tts": "piper/en_US-joe-medium", "realtime": "voicemesh/cascade", "avatar": "local/ada"}


@pytest.mark.parametrize("service", ("stt", "llm", "tts", "realtime"))
def test_local_model_services_read_the_models_folder(config, service):
    spec = config["services"][service]
    assert spec["environment"]["VOICEMESH_MODELS_DIR"] == "/models"
    # Debian's docker-compose prints short syntax: SOURCE:TARGET:MODE.
    (mount,) = [v.split(":") for v in spec["volumes"] if v.split(":")[1] == "/models"]
    assert mount[2] == "ro"
    assert Path(mount[0]) == ROOT / "models"


def test_the_models_folder_is_set_by_one_variable(tmp_path):
    spec = resolved(env={"VOICEMESH_MODELS_PATH": str(tmp_path)})["services"]
    assert all(Path(spec[name]["volumes"][0].split(":")[0]) == tmp_path for name in ("stt", "llm", "tts", "realtime"))


def test_the_services_share_one_ledger_on_a_named_volume(config):
    # Each model service writes its own usage; the orchestrator checks keys and quotas.
    metering = ("stt", "llm", "tts", "realtime", "avatar", "orchestrator")
    assert "ledger" in config["volumes"]
    for name in metering:
        spec = config["services"][name]
        assert "ledger:/home/voicemesh/data:rw" in spec["volumes"], name
        assert spec["environment"]["VOICEMESH_LEDGER"] == "", name  # metering (and keys) off unless set
    url = "sqlite:////home/voicemesh/data/ledger.db"
    on = resolved(env={"VOICEMESH_LEDGER": url})["services"]
    assert all(on[name]["environment"]["VOICEMESH_LEDGER"] == url for name in metering)
