"""The Node.js package: unit tests and types, then the packed tarball against a live local mesh.

The mesh is ``voicemesh up`` (four services, API keys on); the package is installed from its tarball into a
folder outside the repository; node's own test runner runs clients/node/test/mesh.test.js there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile

import pytest

from tests.client.conftest import start_up, stop_up
from tests.clients.conftest import NODE_PACKAGE, ROOT
from tests.orchestrator.conftest import transcribe
from voicemesh.audio import convert, read_wav

QUESTION = ROOT / "voicemesh" / "samples" / "question.wav"


def node(*args: str, cwd=NODE_PACKAGE, env=None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("node"), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)


def counts(tap: str) -> dict[str, int]:
    return {name: int(n) for name, n in re.findall(r"^# (pass|fail|cancelled|skipped) (\d+)$", tap, flags=re.M)}


def test_unit_tests_pass():
    result = node("--test", "test/unit.test.js")
    assert result.returncode == 0, result.stdout + result.stderr
    assert counts(result.stdout) == {"pass": 10, "fail": 0, "cancelled": 0, "skipped": 0}


def test_the_types_check():
    result = subprocess.run([str(NODE_PACKAGE / "node_modules" / ".bin" / "tsc"), "-p", "."], cwd=NODE_PACKAGE,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_tarball_ships_the_repository_protos(node_package):
    with tarfile.open(node_package.tarball) as tar:
        names = set(tar.getnames())
        for proto in sorted((ROOT / "protos").rglob("*.proto")):
            member = f"package/protos/{proto.relative_to(ROOT / 'protos')}"
            assert member in names, member
            assert tar.extractfile(member).read() == proto.read_bytes(), member
    assert {"package/index.js", "package/index.d.ts", "package/examples/agent.ts",
            "package/node_modules/@grpc/grpc-js/package.json"} <= names
    assert not any("/test/" in n and not n.startswith("package/node_modules/") for n in names)
    # The copy is made for the pack and removed after it: the repository's protos stay the only source.
    assert not (NODE_PACKAGE / "protos" / "voicemesh").exists()
    installed = node_package.app / "node_modules" / "voicemesh"
    result = node("-e", "console.log(require('voicemesh').protoRoot())", cwd=node_package.app)
    assert result.stdout.strip() == str(installed / "protos"), result.stderr


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    mesh = start_up(tmp_path_factory.mktemp("up"))
    try:
        yield mesh
    finally:
        stop_up(mesh)


def test_the_packed_package_against_a_live_mesh(up, node_package):
    app = node_package.app
    shutil.copy(NODE_PACKAGE / "test" / "mesh.test.js", app / "mesh.test.js")
    env = {k: v for k, v in os.environ.items() if k not in ("VOICEMESH_API_KEY", "VOICEMESH_KEY_FILE", "NODE_PATH")}
    env.update(VOICEMESH_ADDRESS=up.orchestrator, VOICEMESH_STATE_DIR=str(up.state_dir),
               VOICEMESH_TEST_QUESTION=str(QUESTION), VOICEMESH_TEST_WORK=str(app))
    result = node("--test", "--test-concurrency=1", "mesh.test.js", cwd=app, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert counts(result.stdout) == {"pass": 6, "fail": 0, "cancelled": 0, "skipped": 0}, result.stdout
    pcm, rate = read_wav(app / "answer.wav")
    assert transcribe(convert(pcm, rate, 16000)).strip()
