"""Provider kinds and where each one lives by default.

A kind names a wire format plus a vendor's endpoint. The OpenAI-compatible family (Mistral, Groq,
Together, ... and the local servers) shares the OpenAI adapter and differs only in its base URL,
so adding one of those is a line here. Base URLs are written the way each vendor's own SDK takes
them (the adapter appends the path): OpenAI-style ones and Gemini end in their version segment
(`https://api.openai.com/v1`, `…/v1beta`); Anthropic and Cohere are bare hosts.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class ProviderKind(StrEnum):
    OPENAI = "openai"
    AZURE = "azure"
    ANTHROPIC = "anthropic"
    GEMINI = "gemini"
    COHERE = "cohere"
    BEDROCK = "bedrock"
    MISTRAL = "mistral"
    GROQ = "groq"
    TOGETHER = "together"
    FIREWORKS = "fireworks"
    DEEPSEEK = "deepseek"
    XAI = "xai"
    OPENROUTER = "openrouter"
    PERPLEXITY = "perplexity"
    VLLM = "vllm"
    OLLAMA = "ollama"
    LLAMACPP = "llamacpp"
    TGI = "tgi"
    # Models run inside the gateway (the `local` extra): no upstream, no credential.
    LOCAL = "local"


# Kinds that speak the OpenAI Chat Completions wire format unchanged.
OPENAI_COMPATIBLE = frozenset(
    {
        ProviderKind.OPENAI,
        ProviderKind.MISTRAL,
        ProviderKind.GROQ,
        ProviderKind.TOGETHER,
        ProviderKind.FIREWORKS,
        ProviderKind.DEEPSEEK,
        ProviderKind.XAI,
        ProviderKind.OPENROUTER,
        ProviderKind.PERPLEXITY,
        ProviderKind.VLLM,
        ProviderKind.OLLAMA,
        ProviderKind.LLAMACPP,
        ProviderKind.TGI,
    }
)

# Servers people run themselves (vLLM, Ollama, llama.cpp, TGI) default to the port each one
# listens on out of the box.
DEFAULT_BASE_URLS: Mapping[str, str] = {
    ProviderKind.OPENAI: "https://api.openai.com/v1",
    ProviderKind.ANTHROPIC: "https://api.anthropic.com",
    ProviderKind.GEMINI: "https://generativelanguage.googleapis.com/v1beta",
    ProviderKind.COHERE: "https://api.cohere.com",
    ProviderKind.MISTRAL: "https://api.mistral.ai/v1",
    ProviderKind.GROQ: "https://api.groq.com/openai/v1",
    ProviderKind.TOGETHER: "https://api.together.xyz/v1",
    ProviderKind.FIREWORKS: "https://api.fireworks.ai/inference/v1",
    ProviderKind.DEEPSEEK: "https://api.deepseek.com/v1",
    ProviderKind.XAI: "https://api.x.ai/v1",
    ProviderKind.OPENROUTER: "https://openrouter.ai/api/v1",
    ProviderKind.PERPLEXITY: "https://api.perplexity.ai",
    ProviderKind.VLLM: "http://localhost:8000/v1",
    ProviderKind.OLLAMA: "http://localhost:11434/v1",
    ProviderKind.LLAMACPP: "http://localhost:8080/v1",
    ProviderKind.TGI: "http://localhost:8080/v1",
    ProviderKind.LOCAL: "local://in-process",
}

BEDROCK_URL = "https://bedrock-runtime.{region}.amazonaws.com"


def default_base_url(kind: str, options: Mapping[str, str] | None = None) -> str | None:
    """The kind's endpoint when the provider names none; None where there is no sensible one
    (Azure is always the customer's own resource; Bedrock needs its `region` option)."""
    if kind == ProviderKind.BEDROCK and options and options.get("region"):
        return BEDROCK_URL.format(region=options["region"])
    return DEFAULT_BASE_URLS.get(kind)
