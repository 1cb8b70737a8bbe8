"""Reading an OpenAI-shaped request the same way in every translating adapter: the output
token limit, the stop sequences, tool-call arguments, the embedding inputs, and refusing what a
vendor cannot do.

Pure functions; what cannot be translated raises `TranslationError` naming the parameter, so a
client gets a 400 that says what to drop instead of a silently different answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from capstan.gateway.providers.base import ChatRequest, EmbeddingRequest, TranslationError

__all__ = [
    "arguments_object",
    "embedding_encoding",
    "embedding_texts",
    "max_output_tokens",
    "refuse_params",
    "require_arguments_object",
    "require_one_choice",
    "stop_sequences",
]

ENCODING_FORMATS = ("float", "base64")


def max_output_tokens(request: ChatRequest) -> int | None:
    """The output limit: the newer `max_completion_tokens` wins over `max_tokens`."""
    for name in ("max_completion_tokens", "max_tokens"):
        if request.get(name) is not None:
            return int(request[name])
    return None


def stop_sequences(request: ChatRequest) -> list[str]:
    """`stop` as a list (OpenAI takes one string or a list); empty when absent."""
    stop = request.get("stop")
    if not stop:
        return []
    return [stop] if isinstance(stop, str) else list(stop)


def refuse_params(request: ChatRequest, refusals: Mapping[str, str]) -> None:
    """Raise for the first parameter of `refusals` (name → message) the request sets; empty or
    false values ask for nothing, so they pass."""
    for name, message in refusals.items():
        if request.get(name):
            raise TranslationError(message, param=name)


def require_one_choice(request: ChatRequest, vendor: str) -> None:
    if request.get("n") not in (None, 1):
        raise TranslationError(f"{vendor} returns one choice per request: n must be 1", param="n")


def embedding_texts(request: EmbeddingRequest, vendor: str) -> list[str]:
    """`input` as a list of texts; token arrays cannot be sent to vendors that embed text."""
    value = request.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    raise TranslationError(
        f"{vendor} embeds text only: `input` must be a string or a non-empty list of strings",
        param="input",
    )


def embedding_encoding(request: EmbeddingRequest) -> str:
    """`encoding_format`, "float" when absent; vendors are asked for floats and "base64" is
    packed here (`openai_shapes.embedding_list`)."""
    encoding = request.get("encoding_format") or "float"
    if encoding not in ENCODING_FORMATS:
        raise TranslationError(
            "encoding_format must be 'float' or 'base64'", param="encoding_format"
        )
    return str(encoding)


def arguments_object(arguments: Any) -> dict[str, Any] | None:
    """Tool-call `arguments` (JSON text) as the object vendors take as a call's input: empty
    means no arguments; None when the text is not a JSON object (each caller decides what that
    means)."""
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        parsed = orjson.loads(arguments)
    except (orjson.JSONDecodeError, TypeError):
        return None
    return parsed if isinstance(parsed, dict) else None


def require_arguments_object(arguments: Any, param: str) -> dict[str, Any]:
    """`arguments_object` for vendors that must get an object: anything else is refused."""
    parsed = arguments_object(arguments)
    if parsed is None:
        raise TranslationError("tool call arguments must be a JSON object", param=param)
    return parsed
