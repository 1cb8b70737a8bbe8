"""The OpenAI-shaped answers every translating adapter builds: `chat.completion` and
`chat.completion.chunk` envelopes, usage, assistant messages and tool calls, embedding lists.

Pure functions on plain dicts, so the four vendor translations (Anthropic, Gemini, Cohere,
Bedrock) and the Anthropic dialect write these shapes one way; the vendor-specific reading of
each answer stays in its own module.
"""

from __future__ import annotations

import base64
import struct
import time
from typing import Any

import orjson

from capstan.gateway.providers.base import ChatChunk, ChatCompletion, EmbeddingResponse

__all__ = [
    "arguments_text",
    "assistant_message",
    "chat_completion",
    "completion_choice",
    "completion_chunk",
    "embedding_list",
    "token_usage",
    "tool_call",
    "usage_chunk",
]


def chat_completion(
    *,
    id: str,
    model: str,
    choices: list[dict[str, Any]],
    usage: dict[str, Any],
    created: int | None = None,
) -> ChatCompletion:
    """A `chat.completion`; `created` defaults to now."""
    return {
        "id": id,
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": choices,
        "usage": usage,
    }


def completion_choice(
    message: dict[str, Any], finish_reason: str, *, index: int = 0, logprobs: Any = None
) -> dict[str, Any]:
    """One choice of a `chat.completion`."""
    return {
        "index": index,
        "message": message,
        "finish_reason": finish_reason,
        "logprobs": logprobs,
    }


def assistant_message(text: str, tool_calls: list[dict[str, Any]]) -> dict[str, Any]:
    """The assistant message of an answer: `content` is None only when the model called tools
    and wrote nothing, as OpenAI answers."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def tool_call(call_id: Any, name: Any, arguments: str) -> dict[str, Any]:
    """One entry of `tool_calls` (or the first delta of one in a stream)."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def arguments_text(arguments: Any) -> str:
    """A vendor's tool-call input object as OpenAI's `arguments` JSON text."""
    return orjson.dumps(arguments or {}).decode()


def completion_chunk(
    id: str,
    created: int,
    model: str,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    *,
    index: int = 0,
    logprobs: Any = None,
) -> ChatChunk:
    """A `chat.completion.chunk` carrying one choice's delta."""
    choice = {"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": logprobs}
    return _chunk(id, created, model, [choice])


def usage_chunk(id: str, created: int, model: str, usage: dict[str, Any]) -> ChatChunk:
    """The last chunk of every stream (the `Provider` streaming contract): usage, no choices."""
    chunk = _chunk(id, created, model, [])
    chunk["usage"] = usage
    return chunk


def _chunk(id: str, created: int, model: str, choices: list[dict[str, Any]]) -> ChatChunk:
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
    }


def token_usage(
    prompt: int,
    completion: int,
    *,
    total: int | None = None,
    cached: int | None = None,
    cache_creation: int | None = None,
    reasoning: int | None = None,
) -> dict[str, Any]:
    """OpenAI usage (see the usage contract in `base`); a detail left None is left out, so an
    adapter reports only what its vendor tells. `total` defaults to prompt + completion."""
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion if total is None else total,
    }
    prompt_details = {
        name: value
        for name, value in (("cached_tokens", cached), ("cache_creation_tokens", cache_creation))
        if value is not None
    }
    if prompt_details:
        usage["prompt_tokens_details"] = prompt_details
    if reasoning is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return usage


def embedding_list(
    vectors: list[list[float]], *, model: str, tokens: int, encoding_format: str
) -> EmbeddingResponse:
    """OpenAI's embeddings answer. With `encoding_format` "base64" (what the openai SDK asks
    for by default, decoding it with numpy) each vector is its little-endian float32 bytes,
    base64-encoded."""
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _encode(vector, encoding_format)}
            for i, vector in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _encode(vector: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector
