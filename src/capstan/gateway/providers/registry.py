"""Which adapter speaks each provider kind. Adapters are stateless, so one instance serves all."""

from __future__ import annotations

from capstan.gateway.config.kinds import OPENAI_COMPATIBLE
from capstan.gateway.providers.anthropic import AnthropicProvider
from capstan.gateway.providers.base import Provider
from capstan.gateway.providers.bedrock import BedrockProvider
from capstan.gateway.providers.cohere import CohereProvider
from capstan.gateway.providers.gemini import GeminiProvider
from capstan.gateway.providers.local import LocalProvider
from capstan.gateway.providers.openai_compat import OpenAICompatProvider

_OPENAI = OpenAICompatProvider()
_ADAPTERS: dict[str, Provider] = {
    **{kind: _OPENAI for kind in OPENAI_COMPATIBLE},
    "azure": _OPENAI,
    "anthropic": AnthropicProvider(),
    "gemini": GeminiProvider(),
    "cohere": CohereProvider(),
    "bedrock": BedrockProvider(),
    "local": LocalProvider(),
}


def provider_for(kind: str) -> Provider:
    try:
        return _ADAPTERS[kind]
    except KeyError:
        raise LookupError(f"no adapter for provider kind {kind!r}") from None
