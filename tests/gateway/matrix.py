"""docs/openai.md's client x operation matrix, from a run of the gateway's client tests.

    .venv/bin/python -m tests.gateway.matrix            # runs the tests, prints the matrix (markdown)

Each cell names the tests that prove it; a cell is "yes" only when every one of them passed.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

FILES = ["tests/gateway/test_openai_sdk.py", "tests/gateway/test_livekit_openai.py",
         "tests/gateway/test_openai_node.py", "tests/gateway/test_realtime_gateway.py",
         "tests/gateway/test_pipecat_openai.py"]
CLIENTS = ["openai (Python)", "openai (npm)", "livekit-plugins-openai", "pipecat-ai"]
# operation -> client -> test names (prefixes of the test function names, parameters included)
CELLS: dict[str, dict[str, list[str]]] = {
    "models list / retrieve": {"openai (Python)": ["test_models_list_what_can_answer_with_aliases",
                                                   "test_models_retrieve_ids_with_slashes_and_aliases"]},
    "chat": {"openai (Python)": ["test_chat_with_an_openai_model_name"], "openai (npm)": ["test_openai_npm_sdk"]},
    "chat, streamed": {"openai (Python)": ["test_streamed_chat_with_an_openai_model_name"],
                       "openai (npm)": ["test_openai_npm_sdk"], "pipecat-ai": ["test_pipecat_stt_llm_tts_pipeline"]},
    "chat: 6 at once, default retries": {
        "openai (Python)": ["test_six_concurrent_chats_with_default_retries_all_succeed"]},
    "chat, tools": {"openai (Python)": ["test_tool_call_with_an_openai_model_name"],
                    "livekit-plugins-openai": ["test_llm_calls_a_function_tool"]},
    "transcription": {"openai (Python)": ["test_transcription_of_every_upload_format"],
                      "openai (npm)": ["test_openai_npm_sdk"], "livekit-plugins-openai": ["test_stt_recognize"],
                      "pipecat-ai": ["test_pipecat_stt_llm_tts_pipeline"]},
    "transcription of wav, float wav, mp3, flac, ogg, webm, m4a": {
        "openai (Python)": ["test_transcription_of_every_upload_format"]},
    "transcription: text, srt, vtt": {"openai (Python)": ["test_transcription_text_srt_and_vtt"]},
    "transcription: verbose_json, timestamp_granularities": {
        "openai (Python)": ["test_verbose_json_honours_timestamp_granularities"]},
    "transcription: stream=true": {"openai (Python)": ["test_streamed_transcription_gives_deltas_then_done"]},
    "speech: defaults (mp3), voice alloy": {"openai (Python)": ["test_speech_with_sdk_defaults_is_mp3"],
                                           "openai (npm)": ["test_openai_npm_sdk"],
                                           "livekit-plugins-openai": ["test_tts_with_its_defaults_speaks_the_text"]},
    "speech: mp3, opus, aac, flac, wav, pcm": {"openai (Python)": ["test_speech_in_every_format"]},
    "speech: pcm streamed, voice alloy, in a voice pipeline (STT, LLM, TTS)": {
        "pipecat-ai": ["test_pipecat_stt_llm_tts_pipeline"]},
    "speech: streamed as made": {"openai (Python)": ["test_speech_streams_as_it_is_made"]},
    "speech: stream_format=sse": {"openai (Python)": ["test_speech_as_server_sent_events"],
                                  "livekit-plugins-openai": ["test_tts_with_its_defaults_speaks_the_text"]},
    "errors: model_not_found, 429 Retry-After, 400 param": {
        "openai (Python)": ["test_unknown_model_names_are_404_model_not_found",
                            "test_rate_limit_is_429_with_retry_after",
                            "test_bad_format_is_a_400_naming_the_param",
                            "test_a_failure_after_the_first_token_is_a_json_error"],
        "openai (npm)": ["test_openai_npm_sdk"]},
    "realtime: a spoken turn": {"openai (Python)": ["test_a_spoken_question_gets_a_spoken_answer"],
                                "livekit-plugins-openai": ["test_realtime_model_one_spoken_turn"]},
    "realtime: truncate, cancel, delete, error events": {"openai (Python)": [
        "test_truncate_and_cancel_mid_reply", "test_cancel_with_no_response_is_an_error_event",
        "test_conversation_item_delete"]},
    "realtime over the OpenAI Realtime double (openai backend)": {"openai (Python)": [
        "test_over_the_faithful_openai_double_a_turn_truncate_and_cancel"]},
    "realtime: beta names, browser key subprotocol": {
        "openai (Python)": ["test_beta_names_and_the_browser_key_subprotocol"]},
    "realtime transcription (intent=transcription)": {"livekit-plugins-openai": ["test_realtime_stt_stream"]},
}


def results(junit: Path) -> dict[str, bool]:
    """Test name (with parameters) -> passed."""
    out = {}
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        out[case.get("name")] = not any(child.tag in ("failure", "error", "skipped") for child in case)
    return out


def matrix(passed: dict[str, bool]) -> str:
    lines = ["| operation | " + " | ".join(CLIENTS) + " |", "|---|" + "---|" * len(CLIENTS)]
    for operation, row in CELLS.items():
        cells = []
        for client in CLIENTS:
            names = row.get(client)
            if not names:
                cells.append("-")
                continue
            runs = [ok for test, ok in passed.items() for name in names if test.split("[")[0].startswith(name)]
            cells.append("yes" if runs and all(runs) and len(runs) >= len(names) else "FAILS")
        lines.append(f"| {operation} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        junit = Path(folder) / "junit.xml"
        subprocess.run([sys.executable, "-m", "pytest", *FILES, "-q", "-p", "no:randomly", f"--junitxml={junit}"],
                       check=False)
        print(matrix(results(junit)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
