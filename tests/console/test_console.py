"""The browser console in Debian's chromium, on a live local mesh, with the microphone fed from a WAV file."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from tests.console.browser import Browser
from tests.console.conftest import SECOND_VOICE, write_wav
from tests.speech import silence, speak, words

pytestmark = pytest.mark.slow

LONG_TEXT = ("The history of the city goes back more than two thousand years, to a small settlement on an island "
             "in the river, and over the centuries it grew into one of the great capitals of the world. Its "
             "bridges, markets and churches were rebuilt many times, and each age left its mark on the streets "
             "that people still walk today.")  # about 18 s of speech
DOCS = Path(__file__).resolve().parents[2] / "docs"
STATE = "window.vmConsole"


async def connect(browser, url: str, key: str) -> None:
    await browser.goto(url)
    await browser.eval(f"document.getElementById('key').value = {json.dumps(key)}")
    await browser.eval("document.getElementById('connect').click()")


async def test_a_spoken_question_gets_its_transcript_a_spoken_reply_latency_bars_and_avatar_frames(
        console_mesh, browser, tmp_path):
    await connect(browser, console_mesh.console_url, console_mesh.key)
    # The pickers are filled from the services' Describe, the second voice among them.
    tts = await browser.until("[...document.querySelectorAll('#pick-tts option')].map(o => o.value)", 30,
                              "the TTS picker")
    assert SECOND_VOICE in tts and "piper/en_US-joe-medium" in tts
    await browser.until(f"{STATE}.metrics.length >= 1", 60, "the first turn's metrics")
    await browser.until(f"{STATE}.played.ended >= 3", 20, "the reply's audio to play")
    state = await browser.eval(f"{STATE}")
    assert {"capital", "france"} <= set(words(" ".join(state["finals"]))), state["finals"]
    reply = " ".join(state["replies"].values())
    assert len(words(reply)) >= 2, reply
    # The agent went through its states (whether tiny.en sends an interim for so short a question varies).
    assert {"listening", "thinking", "speaking"} <= set(state["states"]), state["states"]
    page_text = await browser.eval("document.body.innerText")
    assert state["finals"][0] in page_text and reply.strip()[:20] in page_text
    # Audio was scheduled and heard: the analyser on the playback path measured signal.
    assert state["played"]["chunks"] >= 3 and state["played"]["peak"] > 0.01, state["played"]
    metrics = state["metrics"][0]
    assert metrics["voice_to_voice_ms"] > 0 and metrics["llm_ttft_ms"] > 0 and metrics["tts_ttfb_ms"] > 0
    bars = await browser.eval("[...document.querySelectorAll('#latency .turn .bar i')].map(i => i.style.width)")
    assert len(bars) == 5 and sum(int(w.removesuffix("px")) > 0 for w in bars) >= 3, bars
    # The avatar service is on: the <img> shows frames, and they change as the agent speaks.
    assert state["video"]["frames"] > 5 and state["video"]["distinct"] > 2, state["video"]
    assert await browser.eval("document.getElementById('avatar').src.startsWith('blob:')")
    assert not state["errors"], state["errors"]
    await browser.screenshot(tmp_path / "console-turn.png")

    # Switch the voice through the picker, then ask by text: the next turn names the new model.
    await browser.eval(f"const s = document.getElementById('pick-tts'); s.value = {json.dumps(SECOND_VOICE)};"
                       "s.dispatchEvent(new Event('change'))")
    await browser.eval("document.getElementById('text').value = 'What is the capital of Italy?';"
                       "document.getElementById('send').click()")
    await browser.until(f"{STATE}.metrics.length >= 2", 45, "the second turn's metrics")
    state = await browser.eval(f"{STATE}")
    assert state["metrics"][-1]["tts_model"] == SECOND_VOICE, state["metrics"]
    assert state["metrics"][0]["tts_model"] == "piper/en_US-joe-medium"
    assert state["usage"].get("tts", {}).get("characters", 0) > 0, state["usage"]
    # The usage panel also shows the key's usage from the mesh's ledger: this session's turns at least.
    await browser.until(f"({STATE}.keyUsage?.models?.['{SECOND_VOICE}']?.characters || 0) > 0", 15,
                        "the key's usage of the second voice in the ledger")
    key_usage = await browser.eval(f"{STATE}.keyUsage")
    assert key_usage["available"] and key_usage["name"] == "local", key_usage
    assert key_usage["models"]["llama.cpp/smollm2-135m-instruct"]["output_tokens"] > 0, key_usage
    await browser.until(f"{STATE}.played.ended === {STATE}.played.chunks", 20, "the second reply to play out")
    await browser.screenshot(tmp_path / "console-switched.png")
    if os.environ.get("VOICEMESH_UPDATE_DOCS") or not (DOCS / "console.png").exists():
        shutil.copy(tmp_path / "console-switched.png", DOCS / "console.png")


async def test_talking_over_the_agent_interrupts_it_and_the_page_marks_the_reply_cut(console_mesh, tmp_path):
    # The agent reads a long text; about 3 s into it the microphone (this browser's own WAV) talks over it.
    microphone = tmp_path / "barge-in.wav"
    write_wav(microphone, silence(4.0) + speak("Stop. What is the capital of Italy?") + silence(2.0))
    browser = await Browser(tmp_path, microphone).open()
    try:
        await connect(browser, console_mesh.console_url, console_mesh.key)
        await browser.until(f"{STATE}.sessionId", 30, "the session to start")
        await browser.eval(f"send({{type: 'say', text: {json.dumps(LONG_TEXT)}}})")  # the page's own socket
        shown = await browser.until("document.querySelector('#transcript li.agent.interrupted')?.textContent",
                                    30, "the agent's reply marked interrupted")
        # The barge-in is decided on the first words; their final transcript comes once the user stops talking.
        await browser.until(f"{STATE}.finals.length > 0", 30, "the final transcript of the words said over it")
        state = await browser.eval(STATE)
        await browser.screenshot(tmp_path / "console-barge-in.png")
    finally:
        await browser.close()
    said = state["turns"][0]
    assert said["turn_id"] == 1 and said["interrupted"], state["turns"]
    assert LONG_TEXT.startswith(said["text"]) and len(said["text"]) < len(LONG_TEXT) / 2, said
    assert said["text"] in shown
    # The page played far less than the whole text takes (about 18 s at the voice's pace), its answer to the
    # question asked over it included.
    assert 0 < state["played"]["samples"] / 22050 < 11.0, state["played"]
    assert any("stop" in words(final) for final in state["finals"]), state["finals"]


async def test_a_bad_key_shows_a_clear_message(console_mesh, browser, tmp_path):
    await connect(browser, console_mesh.console_url, "vm_wrong_key")
    message = await browser.until("!document.getElementById('error').hidden && "
                                  "document.getElementById('error').textContent", 20, "the error banner")
    await browser.screenshot(tmp_path / "console-bad-key.png")
    assert message.startswith("UNAUTHENTICATED: the mesh refused the API key"), message
    assert await browser.eval(f"{STATE}.sessionId") == ""


async def test_a_killed_stt_service_shows_an_error_on_the_page(console_mesh, browser, tmp_path):
    # `up` restarts a killed service within a second or two, and the orchestrator retries onto it: its
    # supervisor is paused meanwhile, so the STT stays dead as it would without `up`. (This test runs last.)
    await connect(browser, console_mesh.console_url, console_mesh.key)
    await browser.until(f"{STATE}.sessionId", 30, "the session to start")
    await browser.until(f"{STATE}.interim || {STATE}.finals.length", 30, "the STT to hear the question")
    os.kill(console_mesh.up.proc.pid, signal.SIGSTOP)
    try:
        os.kill(console_mesh.stt_pid, signal.SIGKILL)
        # The orchestrator waits out its reconnect window (10 s) before it tells the session; then the page shows it.
        message = await browser.until("!document.getElementById('error').hidden && "
                                      "document.getElementById('error').textContent", 30, "an error on the page")
        await browser.screenshot(tmp_path / "console-stt-killed.png")
    finally:
        os.kill(console_mesh.up.proc.pid, signal.SIGCONT)
    assert message.startswith("UNAVAILABLE: no speech-to-text service answered"), message
