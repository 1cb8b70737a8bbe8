"""Cohere API v2 (`/v2/chat`, `/v2/embed`) behind the OpenAI-shaped `Provider` interface.

This module is the thin shell: it posts and reads. The decisions live in plain functions,
`cohere_request.chat_body` (OpenAI request to Cohere body, strict about what Cohere cannot
express) and `cohere_response` (Cohere answer and stream events to OpenAI shapes).

Embeddings: OpenAI `input` becomes Cohere `texts` in batches of 96 (Cohere's limit per call,
sent concurrently), with `input_type` "search_document" unless the request carries an
`input_type` extra field, since OpenAI has no notion of it and documents are the common case.
Cohere is always asked for floats; `encoding_format: base64`, which the openai SDK sends by
default, is produced here from them.
"""

from __future__ import annotations

import asyncio
import base64
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from capstan.gateway.providers.base import (
    ChatChunk,
    ChatCompletion,
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    FailureKind,
    TranslationError,
    Upstream,
    UpstreamError,
)
from capstan.gateway.providers.cohere_request import chat_body
from capstan.gateway.providers.cohere_response import StreamTranslator, completion_from_cohere
from capstan.gateway.providers.http import extra_headers, post_json, sse_events, upstream_post

__all__ = ["CohereProvider", "embedding_response"]

EMBED_BATCH = 96  # Cohere's limit of texts per /v2/embed call
DEFAULT_INPUT_TYPE = "search_document"


class CohereProvider:
    """Cohere API v2. `base_url` is the API root, such as https://api.cohere.com."""

    async def chat(
        self, http: aiohttp.ClientSession, upstream: Upstream, request: ChatRequest
    ) -> ChatCompletion:
        data = await post_json(
            http,
            endpoint(upstream, "chat"),
            headers=request_headers(upstream),
            payload=chat_body(upstream.model, request),
            timeout_s=upstream.timeout_s,
        )
        return completion_from_cohere(data, upstream.model)

    async def stream_chat(
        self, http: aiohttp.ClientSession, upstream: Upstream, request: ChatRequest
    ) -> AsyncIterator[ChatChunk]:
        body = orjson.dumps({**chat_body(upstream.model, request), "stream": True})
        headers = {
            **request_headers(upstream, accept="text/event-stream"),
            "content-type": "application/json",
        }
        translator = StreamTranslator(upstream.model)
        try:
            async with upstream_post(
                http,
                endpoint(upstream, "chat"),
                headers=headers,
                body=body,
                timeout_s=upstream.timeout_s,
            ) as response:
                async for _name, data in sse_events(response):
                    if data == "[DONE]":
                        break
                    if translator.finished:
                        continue  # read to the end so the connection goes back to the pool
                    for chunk in translator.feed(_decode_event(data)):
                        yield chunk
        except UpstreamError:
            if not translator.finished:  # a failure after message-end lost nothing
                raise
        if not translator.finished:
            raise UpstreamError(
                FailureKind.CONNECTION, "the upstream stream ended before its message-end event"
            )

    async def embed(
        self, http: aiohttp.ClientSession, upstream: Upstream, request: EmbeddingRequest
    ) -> EmbeddingResponse:
        texts = embedding_texts(request.get("input"))
        encoding = request.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise TranslationError(
                "encoding_format must be 'float' or 'base64'", param="encoding_format"
            )
        base: dict[str, Any] = {
            "model": upstream.model,
            "input_type": request.get("input_type") or DEFAULT_INPUT_TYPE,
            "embedding_types": ["float"],
        }
        if request.get("dimensions") is not None:
            base["output_dimension"] = request["dimensions"]
        batches = [texts[i : i + EMBED_BATCH] for i in range(0, len(texts), EMBED_BATCH)]
        try:
            async with asyncio.TaskGroup() as group:
                calls = [
                    group.create_task(
                        post_json(
                            http,
                            endpoint(upstream, "embed"),
                            headers=request_headers(upstream),
                            payload={**base, "texts": batch},
                            timeout_s=upstream.timeout_s,
                        )
                    )
                    for batch in batches
                ]
        except ExceptionGroup as failed:  # one failed batch fails the call, as a plain error
            raise failed.exceptions[0] from None
        return embedding_response([call.result() for call in calls], upstream.model, encoding)


def endpoint(upstream: Upstream, name: str) -> str:
    """`{base_url}/v2/{name}`; a base URL already ending in /v2 is accepted as well."""
    return f"{upstream.base_url.rstrip('/').removesuffix('/v2')}/v2/{name}"


def request_headers(upstream: Upstream, *, accept: str = "application/json") -> dict[str, str]:
    headers = {"accept": accept}
    if upstream.api_key:
        headers["authorization"] = f"Bearer {upstream.api_key}"
    headers.update(extra_headers(upstream))
    return headers


def _decode_event(data: str) -> dict[str, Any]:
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(FailureKind.MALFORMED, "the upstream sent an invalid event") from exc
    if not isinstance(event, dict):
        raise UpstreamError(FailureKind.MALFORMED, "the upstream sent an invalid event")
    return event


# -- embeddings ----------------------------------------------------------------------------


def embedding_texts(value: Any) -> list[str]:
    """OpenAI `input` as Cohere `texts`: token arrays cannot be sent to Cohere."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    raise TranslationError(
        "Cohere embeds text only: input must be a string or a non-empty list of strings",
        param="input",
    )


def embedding_response(answers: list[Any], model: str, encoding: str) -> EmbeddingResponse:
    """One OpenAI embedding list from the answers of consecutive `/v2/embed` batches."""
    vectors: list[list[float]] = []
    tokens = 0
    for answer in answers:
        floats = ((answer or {}).get("embeddings") or {}).get("float")
        if not isinstance(floats, list):
            raise UpstreamError(
                FailureKind.MALFORMED, "the upstream answer has no float embeddings"
            )
        vectors.extend(floats)
        meta = answer.get("meta") or {}
        billed = (meta.get("billed_units") or {}).get("input_tokens")
        counted = (meta.get("tokens") or {}).get("input_tokens")
        tokens += int(billed if billed is not None else counted or 0)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode_vector(v, encoding)}
            for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def encode_vector(vector: list[float], encoding: str) -> list[float] | str:
    """`base64` is OpenAI's: the little-endian float32 bytes, base64-encoded (what the openai
    SDK asks for by default and decodes with numpy)."""
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector
