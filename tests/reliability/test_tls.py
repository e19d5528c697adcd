"""TLS and mutual TLS on a real service process, with a CA generated in the test."""

from __future__ import annotations

import grpc
import pytest

from tests.reliability.certs import issue, make_ca
from tests.tts.helpers import FLUSH, JOE, config, text
from voicemesh import tls
from voicemesh.client.describe import describe_address
from voicemesh.process import health
from voicemesh.v1 import tts_pb2_grpc

pytestmark = pytest.mark.slow

TTS_ARGS = ["--preload", JOE, "--piper-workers", "1"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca = make_ca(folder)
    other_ca = make_ca(folder, "stranger-ca")
    return {"ca": ca, "server": issue(ca, folder, "server"), "client": issue(ca, folder, "client"),
            "stranger": issue(other_ca, folder, "stranger")}


async def speak_over(address: str, credentials: grpc.ChannelCredentials) -> int:
    """Synthesize one sentence over TLS; the number of audio bytes received."""
    async with tls.aio_channel(address, credentials=credentials) as channel:
        call = tts_pb2_grpc.TtsServiceStub(channel).Synthesize(iter([config(), text("Hello over TLS."), FLUSH]))
        return sum([len(r.audio.audio) async for r in call if r.WhichOneof("event") == "audio"])


async def test_tls_server_refuses_plaintext_and_serves_a_client_that_trusts_its_ca(service_process, pki):
    proc = service_process("tts", args=[*TTS_ARGS, "--tls-cert", str(pki["server"].cert),
                                        "--tls-key", str(pki["server"].key)], wait=False)
    trusted = tls.client_credentials(ca=str(pki["ca"].cert))
    proc.credentials = trusted
    proc.wait_serving()

    assert health(proc.address, timeout=2) is None  # plaintext gets no answer
    stranger = tls.client_credentials(ca=str(pki["stranger"].cert))
    assert health(proc.address, timeout=2, credentials=stranger) is None  # a server it cannot verify
    assert health(proc.address, credentials=trusted) == "SERVING"
    assert await speak_over(proc.address, trusted) > 16000  # more than half a second of 16 kHz speech
    assert [d.service for d in describe_address(proc.address, credentials=trusted)] == ["tts"]


async def test_mutual_tls_refuses_a_client_without_a_certificate_from_its_ca(service_process, pki, monkeypatch):
    proc = service_process("tts", args=[*TTS_ARGS, "--tls-cert", str(pki["server"].cert),
                                        "--tls-key", str(pki["server"].key),
                                        "--tls-client-ca", str(pki["ca"].cert)], wait=False)
    with_cert = tls.client_credentials(ca=str(pki["ca"].cert), cert=str(pki["client"].cert),
                                       key=str(pki["client"].key))
    proc.credentials = with_cert
    proc.wait_serving()

    without_cert = tls.client_credentials(ca=str(pki["ca"].cert))
    assert health(proc.address, timeout=2, credentials=without_cert) is None
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await speak_over(proc.address, without_cert)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    foreign = tls.client_credentials(ca=str(pki["ca"].cert), cert=str(pki["stranger"].cert),
                                     key=str(pki["stranger"].key))
    assert health(proc.address, timeout=2, credentials=foreign) is None

    assert health(proc.address, credentials=with_cert) == "SERVING"
    assert await speak_over(proc.address, with_cert) > 16000
    # The same client identity from the environment (what health() and describe use by default).
    monkeypatch.setenv(tls.CA_ENV, str(pki["ca"].cert))
    monkeypatch.setenv(tls.CERT_ENV, str(pki["client"].cert))
    monkeypatch.setenv(tls.KEY_ENV, str(pki["client"].key))
    assert health(proc.address) == "SERVING"
    assert [d.service for d in describe_address(proc.address)] == ["tts"]


def test_server_with_an_unreadable_certificate_exits_with_a_message(service_process, tmp_path):
    proc = service_process("tts", args=["--tls-cert", str(tmp_path / "missing.pem"),
                                        "--tls-key", str(tmp_path / "missing.key")], wait=False)
    assert proc.proc.wait(60) == 1
    assert "cannot read the TLS server key" in proc.log_path.read_text()


async def test_a_whole_mesh_over_mutual_tls(service_process, pki, monkeypatch):
    """Every hop over mutual TLS from the environment: SDK -> orchestrator -> LLM and TTS (and STT)."""
    from voicemesh.client.events import EventType
    from voicemesh.client.session import AgentSession
    from voicemesh.mesh import MeshConfig

    identity = {tls.CA_ENV: str(pki["ca"].cert), tls.CERT_ENV: str(pki["server"].cert),
                tls.KEY_ENV: str(pki["server"].key), "VOICEMESH_TLS_CLIENT_CA": str(pki["ca"].cert)}
    for name, value in identity.items():
        monkeypatch.setenv(name, value)  # the test's own health checks and the SDK use it too
    models = {"stt": ["--workers", "1"], "llm": ["--preload", "llama.cpp/smollm2-135m-instruct"], "tts": TTS_ARGS}
    procs = {name: service_process(name, args=args, env=identity) for name, args in models.items()}
    mesh = MeshConfig({name: {"*": [proc.address]} for name, proc in procs.items()})
    mesh_path = pki["ca"].cert.parent / "mesh.json"
    mesh.write(mesh_path)
    orchestrator = service_process("orchestrator", args=["--mesh", str(mesh_path)], env=identity)
    assert health(orchestrator.address, timeout=2, credentials=tls.client_credentials(ca=str(pki["ca"].cert))) \
        is None  # without a client certificate: refused

    audio = 0
    async with AgentSession(address=orchestrator.address, instructions="Answer in one short sentence.",
                            first_result_timeout_ms=30000) as session:
        await session.send_text("What is the capital of France?")
        async for event in session:
            if event.type is EventType.AGENT_AUDIO:
                audio += len(event.audio)
            elif event.type is EventType.ERROR:
                pytest.fail(f"session error over TLS: {event}")
            elif event.type is EventType.TURN_DONE:
                break
    assert audio > 0
