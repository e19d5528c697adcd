"""The wheel installs everything under ``voicemesh.``."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_layout(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("voicemesh-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"voicemesh", next(t for t in tops if t.endswith(".dist-info"))}, tops
    assert "voicemesh/services/__init__.py" in names
    assert "voicemesh/orchestrator/__init__.py" in names
    assert "voicemesh/v1/stt_pb2_grpc.py" in names
    assert "voicemesh/v1/stt_pb2.pyi" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    for group in ("[voicemesh.stt]", "[voicemesh.llm]", "[voicemesh.tts]", "[voicemesh.realtime]", "[console_scripts]"):
        assert group in text


def test_extras_keep_heavy_engines_optional():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"])
    for engine in ("faster-whisper", "llama-cpp-python", "piper-tts", "onnxruntime"):
        assert engine not in base
    extras = project["optional-dependencies"]
    assert any("piper-tts" in d for d in extras["tts"])
    assert any("faster-whisper" in d for d in extras["stt"])
    assert any("llama-cpp-python" in d for d in extras["llm"])
    assert {"stt", "llm", "tts", "all", "dev"} <= set(extras)
