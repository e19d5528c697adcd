import json

import pytest

from voicemesh.errors import InvalidInput, ModelNotFound
from voicemesh.mesh import MeshConfig


def test_provider_route_then_default(tmp_path, monkeypatch):
    path = tmp_path / "mesh.json"
    path.write_text(json.dumps({"llm": {"llama.cpp": ["127.0.0.1:1", "127.0.0.1:2"], "*": "127.0.0.1:3"}}))
    monkeypatch.delenv("VOICEMESH_MESH_LLM", raising=False)
    mesh = MeshConfig.load(path)
    assert mesh.addresses("llm", "llama.cpp") == ["127.0.0.1:1", "127.0.0.1:2"]
    assert mesh.addresses("llm", "openai") == ["127.0.0.1:3"]
    with pytest.raises(ModelNotFound, match="no tts service address"):
        mesh.addresses("tts", "piper")


def test_env_overrides_the_file(tmp_path, monkeypatch):
    path = tmp_path / "mesh.json"
    MeshConfig.local(ports={"tts": 9000}).write(path)
    monkeypatch.setenv("VOICEMESH_MESH", str(path))
    monkeypatch.setenv("VOICEMESH_MESH_TTS", "10.0.0.1:1, 10.0.0.2:1")
    mesh = MeshConfig.load()
    assert mesh.addresses("tts", "piper") == ["10.0.0.1:1", "10.0.0.2:1"]
    assert mesh.addresses("stt", "faster-whisper") == ["127.0.0.1:50061"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read mesh config"),
        ('{"video": {}}', "unknown modality"),
        ('{"stt": ["a"]}', "must map provider names"),
        ('{"stt": {"*": [1]}}', "list of host:port"),
    ],
)
def test_bad_mesh_config(tmp_path, content, message):
    path = tmp_path / "mesh.json"
    path.write_text(content)
    with pytest.raises(InvalidInput, match=message):
        MeshConfig.load(path)
