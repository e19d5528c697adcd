"""Warm-up: a preloaded model is loaded AND run once before its service reports SERVING.

Each service runs in its own process on the real default model; once health
says SERVING, its log must already hold the warm-up's own result: the words
the STT heard in the shipped sample question, the seconds of audio the voice
made, the tokens the LLM generated. Loading alone (the code before warm-up)
writes none of these, so the first user would pay the runtime's first run.
"""

from __future__ import annotations

import re

import pytest

from voicemesh.client.session import DEFAULT_LLM, DEFAULT_STT, DEFAULT_TTS

CASES = {
    "stt": (DEFAULT_STT, r"warmed up faster-whisper/tiny\.en:en: heard '(?P<result>[^']*)' in \d+ ms"),
    "tts": (DEFAULT_TTS, r"warmed up piper/en_US-joe-medium: (?P<result>[\d.]+) s of audio in \d+ ms"),
    "llm": (DEFAULT_LLM, r"warmed up llama\.cpp/smollm2-135m-instruct: \d+ slot\(s\), (?P<result>\d+) token\(s\)"),
}


@pytest.mark.parametrize("service", sorted(CASES))
def test_preloaded_model_is_exercised_before_serving(service_process, service):
    descriptor, pattern = CASES[service]
    proc = service_process(service, args=["--preload", descriptor])  # returns once health says SERVING
    log = proc.log_path.read_text()
    found = re.search(pattern, log)
    assert found, f"no warm-up of {descriptor} before SERVING:\n{proc.log_tail()}"
    assert log.index(found.group(0)) < log.index("service is SERVING")
    result = found.group("result")
    if service == "stt":
        assert "capital of france" in result.lower()  # a real decode of real speech
    else:
        assert float(result) > 0  # audio made, tokens generated
