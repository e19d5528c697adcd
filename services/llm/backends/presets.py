"""OpenAI-compatible chat providers, each with its known base URL and key variable.

``groq/llama-3.3-70b-versatile`` works with only ``GROQ_API_KEY`` set: every
preset is the ``openai`` backend with another provider name, so its URL comes
from ``VOICEMESH_<PROVIDER>_BASE_URL`` or the public default below, and its key
from ``VOICEMESH_<PROVIDER>_API_KEY`` or the provider's own variable. A client's
own ``base_url`` still has to be on the operator's allowlist (``voicemesh.targets``).
Each preset is one entry point in the ``voicemesh.llm`` group.
"""

from __future__ import annotations

from typing import NamedTuple

from voicemesh.services.llm.backends.openai import OpenAILlmBackend


class Preset(NamedTuple):
    """Where a provider serves its OpenAI-compatible API, which variable holds its key, and a model to list."""

    base_url: str
    key_var: str
    example: str


PRESETS = {
    "groq": Preset("https://api.groq.com/openai/v1", "GROQ_API_KEY", "llama-3.3-70b-versatile"),
    "together": Preset("https://api.together.xyz/v1", "TOGETHER_API_KEY", "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
    "fireworks": Preset("https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY",
                        "accounts/fireworks/models/llama-v3p3-70b-instruct"),
    "cerebras": Preset("https://api.cerebras.ai/v1", "CEREBRAS_API_KEY", "llama-3.3-70b"),
    "deepseek": Preset("https://api.deepseek.com/v1", "DEEPSEEK_API_KEY", "deepseek-chat"),
    "openrouter": Preset("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY", "openai/gpt-4.1-mini"),
    "mistral": Preset("https://api.mistral.ai/v1", "MISTRAL_API_KEY", "mistral-small-latest"),
    "xai": Preset("https://api.x.ai/v1", "XAI_API_KEY", "grok-3-mini"),
    # Self-hosted servers: no key by default (vLLM checks VLLM_API_KEY when started with one).
    "ollama": Preset("http://localhost:11434/v1", "OLLAMA_API_KEY", "llama3.2"),
    "vllm": Preset("http://localhost:8000/v1", "VLLM_API_KEY", "meta-llama/Llama-3.1-8B-Instruct"),
}


def _preset_class(provider: str, preset: Preset) -> type[OpenAILlmBackend]:
    name = provider.capitalize() + "LlmBackend"
    return type(name, (OpenAILlmBackend,), {
        "__doc__": f"Chat with {provider}'s OpenAI-compatible API ({preset.base_url}).",
        "__module__": __name__,
        "provider": provider,
        "default_base_url": preset.base_url,
        "key_env": (preset.key_var,),
        "known_models": {preset.example: 0},
    })


# One class per preset, named by provider for its entry point (``groq = "...presets:groq"``).
globals().update({provider: _preset_class(provider, preset) for provider, preset in PRESETS.items()})
