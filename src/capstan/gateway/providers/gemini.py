"""The Google Gemini API adapter (Generative Language API, `generativelanguage.googleapis.com`).

`Upstream.base_url` includes the API version, e.g. `https://generativelanguage.googleapis.com/
v1beta`; the key travels in `x-goog-api-key` (never in `?key=`, where proxies would log it).
Chat goes to `models/{model}:generateContent`, streams to `:streamGenerateContent?alt=sse`,
embeddings to `:batchEmbedContents`. The translations live in `gemini_request` and
`gemini_response`; this module only does the HTTP. Errors are read with
`gemini_response.upstream_failure`, because Gemini puts the credential verdict and the 429 wait
in the error body's `details`, which the generic reading does not look at.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from capstan.gateway.providers.base import (
    ChatChunk,
    ChatCompletion,
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    Upstream,
)
from capstan.gateway.providers.gemini_request import gemini_embed_request, gemini_request
from capstan.gateway.providers.gemini_response import (
    StreamTranslator,
    completion,
    embeddings,
    upstream_failure,
)
from capstan.gateway.providers.http import (
    extra_headers,
    json_object,
    post_json,
    sse_events,
    upstream_post,
)
from capstan.gateway.upstream_client import UpstreamClient

__all__ = ["GeminiProvider"]

_MALFORMED_EVENT = "Gemini sent an event that is not a JSON object"


class GeminiProvider:
    """Gemini behind the OpenAI-shaped `Provider` interface; holds no per-call state."""

    async def chat(
        self, http: UpstreamClient, upstream: Upstream, request: ChatRequest
    ) -> ChatCompletion:
        answer = await _post_json(
            http, upstream, "generateContent", gemini_request(request, upstream.model)
        )
        return completion(answer, model=upstream.model, created=int(time.time()))

    def stream_chat(
        self, http: UpstreamClient, upstream: Upstream, request: ChatRequest
    ) -> AsyncIterator[ChatChunk]:
        # Translated here, not in the generator, so an untranslatable request fails at the
        # call, before the gateway has started a streamed response to its client.
        body = gemini_request(request, upstream.model)
        return self._stream(http, upstream, body)

    async def _stream(
        self, http: UpstreamClient, upstream: Upstream, body: dict[str, Any]
    ) -> AsyncIterator[ChatChunk]:
        translator = StreamTranslator(upstream.model, int(time.time()))
        async with upstream_post(
            http,
            model_url(upstream, "streamGenerateContent") + "?alt=sse",
            headers=headers(upstream),
            body=orjson.dumps(body),
            timeout_s=upstream.timeout_s,
            read_error=upstream_failure,
        ) as response:
            async for _event, data in sse_events(response):
                for chunk in translator.feed(json_object(data, _MALFORMED_EVENT)):
                    yield chunk
        yield translator.usage_chunk()

    async def embed(
        self, http: UpstreamClient, upstream: Upstream, request: EmbeddingRequest
    ) -> EmbeddingResponse:
        texts, body = gemini_embed_request(request, _model_name(upstream.model))
        answer = await _post_json(http, upstream, "batchEmbedContents", body)
        return embeddings(
            answer,
            texts,
            model=upstream.model,
            encoding_format=request.get("encoding_format"),
        )


def _model_name(model: str) -> str:
    """Gemini's resource name: `models/x` for a model id, tuned models as given."""
    return model if "/" in model else f"models/{model}"


def model_url(upstream: Upstream, method: str) -> str:
    return f"{upstream.base_url.rstrip('/')}/{_model_name(upstream.model)}:{method}"


def headers(upstream: Upstream) -> dict[str, str]:
    result = {"content-type": "application/json"}
    result.update(extra_headers(upstream))
    if upstream.api_key:
        result["x-goog-api-key"] = upstream.api_key
    return result


async def _post_json(
    http: UpstreamClient, upstream: Upstream, method: str, body: dict[str, Any]
) -> dict[str, Any]:
    return await post_json(
        http,
        model_url(upstream, method),
        headers=headers(upstream),
        payload=body,
        timeout_s=upstream.timeout_s,
        read_error=upstream_failure,
    )
