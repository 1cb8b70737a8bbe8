"""Which adapter speaks each provider kind. Adapters are stateless, so one instance serves all."""

from __future__ import annotations

from capstan.gateway.providers.base import Provider
from capstan.gateway.providers.openai_compat import OpenAICompatProvider

OPENAI_COMPATIBLE = frozenset(
    {
        "openai",
        "azure",
        "mistral",
        "groq",
        "together",
        "fireworks",
        "deepseek",
        "xai",
        "openrouter",
        "perplexity",
        "vllm",
        "ollama",
        "llamacpp",
        "tgi",
    }
)

_OPENAI = OpenAICompatProvider()
_ADAPTERS: dict[str, Provider] = {kind: _OPENAI for kind in OPENAI_COMPATIBLE}


def provider_for(kind: str) -> Provider:
    try:
        return _ADAPTERS[kind]
    except KeyError:
        raise LookupError(f"no adapter for provider kind {kind!r}") from None
