"""Cohere API v2 (`/v2/chat`, `/v2/embed`) behind the OpenAI-shaped `Provider` interface.

This module is the thin shell: it posts and reads. The decisions live in plain functions,
`cohere_request.chat_body` (OpenAI request to Cohere body, strict about what Cohere cannot
express) and `cohere_response` (Cohere answer and stream events to OpenAI shapes).

Embeddings: OpenAI `input` becomes Cohere `texts` in batches of 96 (Cohere's limit per call,
sent concurrently), with `input_type` "search_document" unless the request carries an
`input_type` extra field, since OpenAI has no notion of it and documents are the common case.
Cohere is always asked for floats; `encoding_format: base64`, which the openai SDK sends by
default, is packed from them (`openai_shapes.embedding_list`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson

from capstan.gateway.providers.base import (
    ChatChunk,
    ChatCompletion,
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    FailureKind,
    Upstream,
    UpstreamError,
)
from capstan.gateway.providers.cohere_request import chat_body
from capstan.gateway.providers.cohere_response import StreamTranslator, completion_from_cohere
from capstan.gateway.providers.http import (
    extra_headers,
    json_object,
    post_json,
    read_rest,
    sse_events,
    upstream_post,
)
from capstan.gateway.providers.openai_request import embedding_encoding, embedding_texts
from capstan.gateway.providers.openai_shapes import embedding_list
from capstan.gateway.upstream_client import UpstreamClient

__all__ = ["CohereProvider", "embedding_response"]

EMBED_BATCH = 96  # Cohere's limit of texts per /v2/embed call
DEFAULT_INPUT_TYPE = "search_document"


class CohereProvider:
    """Cohere API v2. `base_url` is the API root, such as https://api.cohere.com."""

    async def chat(
        self, http: UpstreamClient, upstream: Upstream, request: ChatRequest
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
        self, http: UpstreamClient, upstream: Upstream, request: ChatRequest
    ) -> AsyncIterator[ChatChunk]:
        body = chat_body(upstream.model, request)
        body["stream"] = True
        translator = StreamTranslator(upstream.model)
        async with upstream_post(
            http,
            endpoint(upstream, "chat"),
            headers=request_headers(upstream, accept="text/event-stream"),
            body=orjson.dumps(body),
            timeout_s=upstream.timeout_s,
        ) as response:
            async for _name, data in sse_events(response):
                if data == "[DONE]":
                    break
                event = json_object(data, "the upstream sent an invalid event")
                for chunk in translator.feed(event):
                    yield chunk
                if translator.finished:
                    await read_rest(response)
                    break
        if not translator.finished:
            raise UpstreamError(
                FailureKind.CONNECTION, "the upstream stream ended before its message-end event"
            )

    async def embed(
        self, http: UpstreamClient, upstream: Upstream, request: EmbeddingRequest
    ) -> EmbeddingResponse:
        texts = embedding_texts(request, "Cohere")
        encoding = embedding_encoding(request)
        base: dict[str, Any] = {
            "model": upstream.model,
            "input_type": request.get("input_type") or DEFAULT_INPUT_TYPE,
            "embedding_types": ["float"],
        }
        if request.get("dimensions") is not None:
            base["output_dimension"] = request["dimensions"]
        batches = [texts[i : i + EMBED_BATCH] for i in range(0, len(texts), EMBED_BATCH)]
        headers = request_headers(upstream)
        try:
            async with asyncio.TaskGroup() as group:
                calls = [
                    group.create_task(
                        post_json(
                            http,
                            endpoint(upstream, "embed"),
                            headers=headers,
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
    headers = {"accept": accept, "content-type": "application/json"}
    if upstream.api_key:
        headers["authorization"] = f"Bearer {upstream.api_key}"
    headers.update(extra_headers(upstream))
    return headers


def embedding_response(
    answers: list[dict[str, Any]], model: str, encoding: str
) -> EmbeddingResponse:
    """One OpenAI embedding list from the answers of consecutive `/v2/embed` batches."""
    vectors: list[list[float]] = []
    tokens = 0
    for answer in answers:
        floats = (answer.get("embeddings") or {}).get("float")
        if not isinstance(floats, list):
            raise UpstreamError(
                FailureKind.MALFORMED, "the upstream answer has no float embeddings"
            )
        vectors.extend(floats)
        meta = answer.get("meta") or {}
        billed = (meta.get("billed_units") or {}).get("input_tokens")
        counted = (meta.get("tokens") or {}).get("input_tokens")
        tokens += int(billed if billed is not None else counted or 0)
    return embedding_list(vectors, model=model, tokens=tokens, encoding_format=encoding)
