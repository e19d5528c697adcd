"""A provider from an outside package: pip-installed into a folder of its own, used by a real STT service."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stt.helpers import finals, layout, recognize, stub
from voicemesh.v1 import stt_pb2

pytestmark = pytest.mark.slow
PACKAGE = Path(__file__).parent / "example_plugin"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The example package installed with pip (as a user would, but into a folder: the venv stays clean)."""
    folder = tmp_path_factory.mktemp("outside-plugin")
    source, target = folder / "src", folder / "site"
    shutil.copytree(PACKAGE, source)  # a build writes next to its sources: keep the checkout clean
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, cwd=folder)
    assert (target / "voicemesh_example_stt").is_dir()
    assert list(target.glob("voicemesh_example_stt-*.dist-info/entry_points.txt"))
    return target


def test_the_example_is_not_part_of_voicemesh():
    assert importlib.util.find_spec("voicemesh_example_stt") is None


def test_an_installed_outside_provider_serves_streams_with_its_own_settings(service_process, site):
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")]))
    stt = service_process("stt", args=["--preload", "", "--example-threshold-db", "-40"],
                          env={"PYTHONPATH": path})
    description = stub(stt.address).Describe(stt_pb2.SttServiceDescribeRequest()).description
    assert "example/energy:en" in [m.descriptor for m in description.models]

    speech = layout(["The weather is nice today.", "What is the capital of France?"], gap_s=1.0)
    responses = recognize(stt.address, speech.audio, model="example/energy:en")
    transcripts = finals(responses)
    assert len(transcripts) == 2
    for transcript, (start, end) in zip(transcripts, speech.truth):
        assert transcript.text.startswith("speech of ")
        assert abs(transcript.start_ms - start) <= 120 and abs(transcript.end_ms - end) <= 120, (transcript, start, end)
    assert responses[-1].usage.model == "example/energy:en"
