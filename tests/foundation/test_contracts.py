"""The protos lint clean and the committed stubs match them."""

import shutil
import subprocess
from pathlib import Path

import pytest

from voicemesh import codegen

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / ".tools" / "node_modules" / ".bin" / "buf"


def test_committed_stubs_match_the_protos():
    assert codegen.drift() == []


def test_drift_is_detected_when_a_proto_changes(tmp_path):
    protos = tmp_path / "protos"
    shutil.copytree(codegen.PROTO_ROOT, protos)
    tts = protos / "voicemesh" / "v1" / "tts.proto"
    tts.write_text(tts.read_text().replace("  float speed = 3;", "  float speed = 3;\n  float pitch = 99;"))
    assert "tts_pb2.py" in codegen.drift(proto_root=protos)


def test_every_service_is_a_config_first_bidi_stream_with_describe():
    from voicemesh.v1 import agent_pb2, avatar_pb2, llm_pb2, realtime_pb2, stt_pb2, tts_pb2

    cases = [
        (stt_pb2, "SttService", "Recognize", "config"),
        (llm_pb2, "LlmService", "Chat", "config"),
        (tts_pb2, "TtsService", "Synthesize", "config"),
        (realtime_pb2, "RealtimeService", "Converse", "session_update"),
        (agent_pb2, "AgentService", "Session", "config"),
        (avatar_pb2, "AvatarService", "Render", "config"),
    ]
    for module, service_name, method_name, first_field in cases:
        service = module.DESCRIPTOR.services_by_name[service_name]
        method = service.methods_by_name[method_name]
        assert method.client_streaming and method.server_streaming, method.full_name
        oneof = method.input_type.oneofs_by_name["request"]
        assert oneof.fields[0].name == first_field, method.full_name
        describe = service.methods_by_name["Describe"]
        assert not describe.client_streaming and not describe.server_streaming


@pytest.mark.skipif(not BUF.exists(), reason="buf is installed by scripts/dev setup (npm @bufbuild/buf)")
def test_buf_lint_is_clean():
    result = subprocess.run([str(BUF), "lint"], cwd=ROOT / "protos", capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(not BUF.exists(), reason="buf is installed by scripts/dev setup (npm @bufbuild/buf)")
def test_buf_lint_catches_an_undocumented_field(tmp_path):
    protos = tmp_path / "protos"
    shutil.copytree(ROOT / "protos", protos)
    common = protos / "voicemesh" / "v1" / "common.proto"
    common.write_text(common.read_text().replace("message Flush {}", "message Flush {\n  int32 undocumented = 1;\n}"))
    result = subprocess.run([str(BUF), "lint"], cwd=protos, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "undocumented" in result.stdout + result.stderr


def test_api_reference_matches_the_protos(tmp_path):
    from voicemesh import protodoc

    assert protodoc.render(protodoc.descriptor_set()) == protodoc.OUTPUT.read_text()
    protos = tmp_path / "protos"
    shutil.copytree(codegen.PROTO_ROOT, protos)
    tts = protos / "voicemesh" / "v1" / "tts.proto"
    tts.write_text(tts.read_text().replace("// Speaking rate, 1.0 is normal", "// Tempo, 1.0 is normal"))
    changed = protodoc.render(protodoc.descriptor_set(protos))
    assert "Tempo, 1.0 is normal" in changed and changed != protodoc.OUTPUT.read_text()
