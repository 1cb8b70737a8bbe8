"""The Google Gemini API adapter (Generative Language API, `generativelanguage.googleapis.com`).

`Upstream.base_url` includes the API version, e.g. `https://generativelanguage.googleapis.com/
v1beta`; the key travels in `x-goog-api-key` (never in `?key=`, where proxies would log it).
Chat goes to `models/{model}:generateContent`, streams to `:streamGenerateContent?alt=sse`,
embeddings to `:batchEmbedContents`. The translations live in `gemini_request` and
`gemini_response`; this module only does the HTTP.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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
    Upstream,
    UpstreamError,
)
from capstan.gateway.providers.gemini_request import gemini_embed_request, gemini_request
from capstan.gateway.providers.gemini_response import (
    StreamTranslator,
    completion,
    embeddings,
    upstream_failure,
)
from capstan.gateway.providers.http import extra_headers, sse_events

__all__ = ["GeminiProvider"]


class GeminiProvider:
    """Gemini behind the OpenAI-shaped `Provider` interface; holds no per-call state."""

    async def chat(
        self, http: aiohttp.ClientSession, upstream: Upstream, request: ChatRequest
    ) -> ChatCompletion:
        body = gemini_request(request, upstream.model)
        url = model_url(upstream, "generateContent")
        async with _post(http, upstream, url, body) as response:
            raw = await response.read()
        return completion(_json(raw), model=upstream.model, created=int(time.time()))

    def stream_chat(
        self, http: aiohttp.ClientSession, upstream: Upstream, request: ChatRequest
    ) -> AsyncIterator[ChatChunk]:
        # Translated here, not in the generator, so an untranslatable request fails at the
        # call, before the gateway has started a streamed response to its client.
        body = gemini_request(request, upstream.model)
        return self._stream(http, upstream, body)

    async def _stream(
        self, http: aiohttp.ClientSession, upstream: Upstream, body: dict[str, Any]
    ) -> AsyncIterator[ChatChunk]:
        url = model_url(upstream, "streamGenerateContent") + "?alt=sse"
        translator = StreamTranslator(upstream.model, int(time.time()))
        async with _post(http, upstream, url, body) as response:
            async for _event, data in sse_events(response):
                for chunk in translator.feed(_json(data.encode())):
                    yield chunk
        yield translator.usage_chunk()

    async def embed(
        self, http: aiohttp.ClientSession, upstream: Upstream, request: EmbeddingRequest
    ) -> EmbeddingResponse:
        texts, body = gemini_embed_request(request, _model_name(upstream.model))
        url = model_url(upstream, "batchEmbedContents")
        async with _post(http, upstream, url, body) as response:
            raw = await response.read()
        return embeddings(
            _json(raw),
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


def _json(raw: bytes) -> Any:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(FailureKind.MALFORMED, "Gemini answered invalid JSON") from exc
    if not isinstance(data, dict):
        raise UpstreamError(FailureKind.MALFORMED, "Gemini answered JSON that is not an object")
    return data


@asynccontextmanager
async def _post(
    http: aiohttp.ClientSession, upstream: Upstream, url: str, body: dict[str, Any]
) -> AsyncIterator[aiohttp.ClientResponse]:
    """`http.upstream_post` with Gemini's error reading: the generic helper sees only the
    status and message, and Gemini puts the credential verdict and the 429 wait in the body's
    `details` (see `gemini_response.upstream_failure`)."""
    try:
        async with http.post(
            url,
            data=orjson.dumps(body),
            headers=headers(upstream),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=10, sock_read=upstream.timeout_s
            ),
        ) as response:
            if response.status >= 400:
                raise upstream_failure(response.status, await response.read(), response.headers)
            yield response
    except UpstreamError:
        raise
    except TimeoutError as exc:
        raise UpstreamError(FailureKind.TIMEOUT, "the upstream did not answer in time") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamError(
            FailureKind.CONNECTION, f"could not reach the upstream: {type(exc).__name__}"
        ) from exc
