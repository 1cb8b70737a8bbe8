"""The OpenAI-compatible family: OpenAI, Azure OpenAI, Mistral, Groq, Together, Fireworks,
DeepSeek, xAI, OpenRouter, Perplexity, vLLM, Ollama, llama.cpp server and TGI.

They all take the OpenAI body as is, so this adapter forwards it untouched (unknown extra
fields included) and only differs per kind in the URL and the credential header: Azure puts
the deployment in the path, wants `api-version` in the query and the key in `api-key`.
Streams always ask the upstream for usage, so every call can be priced; the gateway removes the
usage chunk when the client did not ask for it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any
from urllib.parse import quote

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
    WireJSON,
)
from capstan.gateway.providers.http import (
    extra_headers,
    json_object,
    post_json,
    read_rest,
    sse_events,
    upstream_post,
)
from capstan.gateway.providers.openai_shapes import token_usage, usage_chunk
from capstan.gateway.upstream_client import UpstreamClient

AZURE_DEFAULT_API_VERSION = "2024-10-21"


def endpoint(upstream: Upstream, operation: str) -> str:
    """`operation` is `chat/completions` or `embeddings`."""
    base = upstream.base_url.rstrip("/")
    if upstream.kind == "azure":
        version = upstream.options.get("api_version", AZURE_DEFAULT_API_VERSION)
        deployment = quote(upstream.model, safe="")
        return f"{base}/openai/deployments/{deployment}/{operation}?api-version={version}"
    return f"{base}/{operation}"


def auth_headers(upstream: Upstream) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if upstream.api_key:
        if upstream.kind == "azure":
            headers["api-key"] = upstream.api_key
        else:
            headers["authorization"] = f"Bearer {upstream.api_key}"
    headers.update(extra_headers(upstream))
    return headers


def _body(upstream: Upstream, request: dict[str, Any]) -> dict[str, Any]:
    body = dict(request)
    body["model"] = upstream.model
    return body


class OpenAICompatProvider:
    def chat(
        self, http: UpstreamClient, upstream: Upstream, request: ChatRequest
    ) -> Coroutine[Any, Any, ChatCompletion]:
        """`post_json`'s coroutine itself, not one wrapping it: one frame less between the
        task and the socket on the path most calls take."""
        body = _body(upstream, request)
        body.pop("stream", None)
        body.pop("stream_options", None)
        return post_json(
            http,
            endpoint(upstream, "chat/completions"),
            headers=auth_headers(upstream),
            payload=body,
            timeout_s=upstream.timeout_s,
        )

    async def stream_chat(
        self, http: UpstreamClient, upstream: Upstream, request: ChatRequest
    ) -> AsyncIterator[ChatChunk]:
        body = _body(upstream, request)
        body["stream"] = True
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        last_usage: dict[str, Any] | None = None
        template: dict[str, Any] = {}
        async with upstream_post(
            http,
            endpoint(upstream, "chat/completions"),
            headers=auth_headers(upstream),
            body=orjson.dumps(body),
            timeout_s=upstream.timeout_s,
        ) as response:
            async for _event, data in sse_events(response):
                if data == "[DONE]":
                    await read_rest(response)
                    break
                chunk = _parse_chunk(data)
                if not template:
                    template = {k: chunk.get(k) for k in ("id", "created", "model")}
                usage = chunk.pop("usage", None)
                if usage:  # on the usage chunk, or on the finishing chunk for some servers
                    last_usage = usage
                    if not chunk.get("choices"):
                        continue  # this adapter sends the usage chunk last
                    yield chunk
                else:  # unchanged (a `"usage": null` is what OpenAI itself sends): forwardable
                    yield WireJSON(chunk, data.encode())
            else:
                raise UpstreamError(
                    FailureKind.CONNECTION, "the upstream stream ended before [DONE]"
                )
        yield usage_chunk(
            template.get("id") or "chatcmpl-capstan",
            template.get("created") or int(time.time()),
            template.get("model") or upstream.model,
            last_usage or token_usage(0, 0),
        )

    async def embed(
        self, http: UpstreamClient, upstream: Upstream, request: EmbeddingRequest
    ) -> EmbeddingResponse:
        return await post_json(
            http,
            endpoint(upstream, "embeddings"),
            headers=auth_headers(upstream),
            payload=_body(upstream, request),
            timeout_s=upstream.timeout_s,
        )


def _parse_chunk(data: str) -> dict[str, Any]:
    chunk = json_object(data, "the upstream sent a malformed chunk")
    if "error" in chunk and "choices" not in chunk:
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise UpstreamError(FailureKind.SERVER, str(message or "upstream stream error"))
    return chunk
