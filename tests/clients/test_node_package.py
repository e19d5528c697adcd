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
    assert counts(result.stdout) == {"pass": 11, "fail": 0, "cancelled": 0, "skipped": 0}


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
    # Force the exit so that a failed test's open session cannot keep node running until the timeout.
    result = node("--test", "--test-concurrency=1", "--test-force-exit", "--test-timeout=300000", "mesh.test.js",
                  cwd=app, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert counts(result.stdout) == {"pass": 6, "fail": 0, "cancelled": 0, "skipped": 0}, result.stdout
    pcm, rate = read_wav(app / "answer.wav")
    assert transcribe(convert(pcm, rate, 16000)).strip()


START = """
const { AgentSession } = require('voicemesh');
const session = new AgentSession({ address: process.argv[1], startTimeoutMs: 20000 });
session.start().then((id) => console.log(`started ${id}`), (error) => console.log(`failed ${error.message}`))
  .finally(() => session.close());
"""


def test_tls_from_the_environment(up, node_package, tmp_path):
    """An orchestrator on mutual TLS (over the mesh's plaintext model services) takes the package's sessions
    when VOICEMESH_TLS_CA/_CERT/_KEY are set, and refuses them without a client certificate or TLS."""
    from tests.reliability.certs import issue, make_ca
    from voicemesh import tls
    from voicemesh.mesh import MeshConfig
    from voicemesh.process import ServiceProcess

    ca = make_ca(tmp_path)
    server, client = issue(ca, tmp_path, "server"), issue(ca, tmp_path, "client")
    mesh_path = tmp_path / "mesh.json"
    MeshConfig({name: {"*": [up.addresses[name]]} for name in ("stt", "llm", "tts")}).write(mesh_path)
    # The orchestrator serves TLS and calls the model services in plaintext (no CA of its own).
    env = {tls.CA_ENV: "", "VOICEMESH_LEDGER": f"sqlite:///{up.state_dir / 'ledger.db'}", "VOICEMESH_AUTH": "1"}
    proc = ServiceProcess("orchestrator", env=env, log_path=tmp_path / "orchestrator.log",
                          credentials=tls.client_credentials(str(ca.cert), str(client.cert), str(client.key)),
                          args=["--metrics-port", "-1", "--mesh", str(mesh_path), "--tls-cert", str(server.cert),
                                "--tls-key", str(server.key), "--tls-client-ca", str(ca.cert)]).start()
    try:
        proc.wait_serving()
        base = {k: v for k, v in os.environ.items() if not k.startswith("VOICEMESH_TLS_") and k != "VOICEMESH_API_KEY"}
        base["VOICEMESH_STATE_DIR"] = str(up.state_dir)
        mutual = {tls.CA_ENV: str(ca.cert), tls.CERT_ENV: str(client.cert), tls.KEY_ENV: str(client.key)}
        outputs = {}
        for name, extra in (("mutual", mutual), ("no client certificate", {tls.CA_ENV: str(ca.cert)}),
                            ("plaintext", {})):
            result = node("-e", START, proc.address, cwd=node_package.app, env={**base, **extra}, timeout=60)
            outputs[name] = result.stdout.strip()  # stderr: node's warning about a TLS server name that is an IP
        assert re.fullmatch(r"started \S+", outputs["mutual"]), outputs
        assert outputs["no client certificate"].startswith("failed UNAVAILABLE"), outputs
        assert outputs["plaintext"].startswith("failed UNAVAILABLE"), outputs
    finally:
        proc.stop()
