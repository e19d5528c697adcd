"""The shared runtime, shown on real service processes over loopback."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import grpc
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from tests.foundation import plugin
from voicemesh.process import free_port, health
from voicemesh.runtime.status import detail_of
from voicemesh.v1 import common_pb2, llm_pb2, llm_pb2_grpc, stt_pb2, stt_pb2_grpc, tts_pb2, tts_pb2_grpc

VOICE = "piper/en_US-joe-medium"


def wait_for(predicate, timeout=30.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("condition not met")


def test_health_moves_from_not_serving_to_serving_when_the_model_has_loaded(service_process, tmp_path):
    plugin.install(tmp_path)
    gate = tmp_path / "gate"
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "GATE_FILE": str(gate)}
    proc = service_process("tts", args=["--preload", "gated/model"], env=env, wait=False)
    first = wait_for(lambda: health(proc.address), timeout=60)
    assert first == "NOT_SERVING"
    time.sleep(0.5)  # the gate is closed: loading cannot finish
    assert health(proc.address) == "NOT_SERVING"
    assert health(proc.address, "voicemesh.v1.TtsService") == "NOT_SERVING"
    gate.touch()
    wait_for(lambda: health(proc.address) == "SERVING", timeout=30)
    assert health(proc.address, "voicemesh.v1.TtsService") == "SERVING"


def test_reflection_lists_the_service(service_process):
    proc = service_process("tts")
    with grpc.insecure_channel(proc.address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = database.get_services()
        assert "voicemesh.v1.TtsService" in services
        assert "grpc.health.v1.Health" in services
        file = database.FindFileContainingSymbol("voicemesh.v1.TtsService")
        assert file.name == "voicemesh/v1/tts.proto"


FIRST_NOT_CONFIG = {
    "stt": (stt_pb2_grpc.SttServiceStub, "Recognize", stt_pb2.RecognizeRequest(audio=bytes(640))),
    "llm": (llm_pb2_grpc.LlmServiceStub, "Chat", llm_pb2.ChatRequest(cancel=common_pb2.Cancel())),
    "tts": (tts_pb2_grpc.TtsServiceStub, "Synthesize", tts_pb2.SynthesizeRequest(text="hello")),
}


@pytest.mark.parametrize("service", sorted(FIRST_NOT_CONFIG))
def test_a_stream_whose_first_message_is_not_a_config_is_invalid(service_process, service):
    proc = service_process(service)
    stub_cls, method, request = FIRST_NOT_CONFIG[service]
    with grpc.insecure_channel(proc.address) as channel:
        call = getattr(stub_cls(channel), method)(iter([request]), timeout=30)
        with pytest.raises(grpc.RpcError) as info:
            list(call)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "first message must be a config" in info.value.details()


def test_unknown_provider_is_not_found_with_detail(service_process):
    proc = service_process("tts")
    with grpc.insecure_channel(proc.address) as channel:
        stub = tts_pb2_grpc.TtsServiceStub(channel)
        requests = [tts_pb2.SynthesizeRequest(config=tts_pb2.SynthesisConfig(voice="nosuch/voice"))]
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Synthesize(iter(requests), timeout=30))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "unknown tts provider 'nosuch'" in info.value.details()
    detail = detail_of(info.value)
    assert detail is not None and detail.reason == "UNKNOWN_MODEL" and "piper" in list(detail.known)


def new_stream_code(address: str) -> grpc.StatusCode:
    """Status of a fresh stream that sends nothing (INVALID_ARGUMENT while the server accepts streams)."""
    with grpc.insecure_channel(address) as channel:
        try:
            list(tts_pb2_grpc.TtsServiceStub(channel).Synthesize(iter([]), timeout=5))
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def test_sigterm_lets_an_open_stream_finish_and_refuses_new_ones(service_process):
    proc = service_process("tts", args=["--preload", VOICE, "--grace-s", "30"])
    sent_signal = []

    def requests():
        yield tts_pb2.SynthesizeRequest(config=tts_pb2.SynthesisConfig(voice=VOICE, sample_rate_hz=16000))
        yield tts_pb2.SynthesizeRequest(text="The server is shutting down. ")
        while not sent_signal:
            time.sleep(0.01)
        time.sleep(0.3)
        yield tts_pb2.SynthesizeRequest(text="This sentence arrives after the signal.")

    with grpc.insecure_channel(proc.address) as channel:
        stub = tts_pb2_grpc.TtsServiceStub(channel)
        responses = stub.Synthesize(requests(), timeout=60)
        first = next(responses)
        assert first.WhichOneof("event") == "audio"
        proc.proc.send_signal(signal.SIGTERM)
        sent_signal.append(True)
        # Once the signal is handled, new streams are refused while the open one drains.
        assert wait_for(lambda: new_stream_code(proc.address) == grpc.StatusCode.UNAVAILABLE, timeout=10)
        rest = list(responses)
    kinds = [r.WhichOneof("event") for r in rest]
    assert kinds[-1] == "usage"
    spoken = [r.segment_done.text.strip() for r in rest if r.WhichOneof("event") == "segment_done"]
    assert spoken[-1] == "This sentence arrives after the signal."
    assert rest[-1].usage.audio_seconds_out > 1.0
    assert proc.proc.wait(30) == 0


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def counter(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_endpoint_serves_counters_that_change(service_process):
    port = free_port()
    proc = service_process("tts", args=["--metrics-port", str(port)])
    before = scrape(port)
    with grpc.insecure_channel(proc.address) as channel:
        stub = tts_pb2_grpc.TtsServiceStub(channel)
        stub.Describe(tts_pb2.TtsServiceDescribeRequest(), timeout=30)
        with pytest.raises(grpc.RpcError):
            list(stub.Synthesize(iter([tts_pb2.SynthesizeRequest(text="x")]), timeout=30))
    after = scrape(port)
    ok = dict(name="voicemesh_rpcs_total", service="tts", method="Describe", code="OK")
    assert counter(after, **ok) == counter(before, **ok) + 1
    bad = dict(name="voicemesh_errors_total", service="tts", method="Synthesize", code="INVALID_ARGUMENT")
    assert counter(after, **bad) == counter(before, **bad) + 1
    assert counter(after, "voicemesh_messages_received_total", method="Synthesize") >= 1
    assert re.search(r'voicemesh_streams_open\{method="Synthesize",service="tts"\} 0\.0', after)


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "voicemesh.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_describe_and_health_commands(service_process):
    proc = service_process("tts")
    described = run_cli("describe", proc.address)
    assert described.returncode == 0, described.stderr
    assert "service tts" in described.stdout and VOICE in described.stdout
    assert run_cli("health", proc.address).stdout.strip() == "SERVING"
    dead = run_cli("health", f"127.0.0.1:{free_port()}", "--timeout", "1")
    assert dead.returncode != 0
    bad = run_cli("describe", f"127.0.0.1:{free_port()}", "--timeout", "1")
    assert bad.returncode == 1 and "voicemesh describe:" in bad.stderr


@pytest.mark.parametrize(
    "args",
    [(), ("serve",), ("serve", "stt"), ("serve", "llm"), ("serve", "tts"), ("describe",), ("health",)],
)
def test_every_command_has_help(args):
    result = run_cli(*args, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: voicemesh" in result.stdout
    if args[:1] == ("serve",) and len(args) == 2:
        assert "VOICEMESH_PORT" in result.stdout and "--preload" in result.stdout



def test_a_service_stops_when_the_process_that_started_it_is_killed(tmp_path):
    # A parent that starts a service the way `voicemesh up` and the benchmarks do, then is killed with SIGKILL,
    # so it has no chance to stop it.
    pid_file = tmp_path / "child.pid"
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, time\n"
        "from voicemesh.process import ServiceProcess\n"
        f"proc = ServiceProcess('tts', args=['--metrics-port', '-1'], log_path={str(tmp_path / 'tts.log')!r}).start()\n"
        "proc.wait_serving(120)\n"
        f"open({str(pid_file)!r}, 'w').write(str(proc.proc.pid))\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)])
    child = None
    try:
        child = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), timeout=120))
        parent.kill()
        parent.wait(10)

        def gone() -> bool:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                return True
            return open(f"/proc/{child}/stat").read().split()[2] == "Z"  # exited, not yet reaped

        wait_for(gone, timeout=30, interval=0.2)
    finally:
        parent.kill()
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)  # a child this test failed to see stop does not outlive it
    log = (tmp_path / "tts.log").read_text()
    assert "is gone: stopping" in log and "tts service stopped" in log


def test_reflection_v1_answers_beside_v1alpha(service_process):
    """grpcurl asks grpc.reflection.v1 first; its messages are v1alpha's on the wire."""
    from grpc_reflection.v1alpha import reflection_pb2

    proc = service_process("tts")
    with grpc.insecure_channel(proc.address) as channel:
        info = channel.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                     request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                                     response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
        requests = [reflection_pb2.ServerReflectionRequest(list_services=""),
                    reflection_pb2.ServerReflectionRequest(file_containing_symbol="voicemesh.v1.TtsService")]
        listed, found = list(info(iter(requests), timeout=30))
    names = {s.name for s in listed.list_services_response.service}
    assert {"voicemesh.v1.TtsService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} <= names
    assert found.file_descriptor_response.file_descriptor_proto
