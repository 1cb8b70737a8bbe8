"""The Anthropic Messages API adapter.

Two ways in:
- `AnthropicProvider` implements `Provider` for OpenAI-shaped requests reaching a Claude model:
  the body is translated (`anthropic_translate`), sent to `/v1/messages`, and the answer or the
  event stream translated back (`anthropic_stream`);
- `messages` / `stream_messages` pass an Anthropic-dialect client's body through untouched
  (only `model` is set to the upstream's id), so features the OpenAI shape cannot carry (cache
  control, citations, server tools, thinking signatures) survive when both ends speak Anthropic.

`base_url` is the vendor root (`https://api.anthropic.com`); a trailing `/v1` is tolerated so a
URL copied from an SDK setting works as well.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import orjson

from capstan.gateway.providers.anthropic_stream import AnthropicChunkTranslator, stream_error
from capstan.gateway.providers.anthropic_translate import (
    ANTHROPIC_VERSION,
    to_chat_completion,
    to_messages_body,
)
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
from capstan.gateway.providers.http import (
    extra_headers,
    json_object,
    post_json,
    read_rest,
    sse_events,
    upstream_post,
)
from capstan.gateway.upstream_client import UpstreamClient

__all__ = [
    "AnthropicProvider",
    "count_tokens",
    "headers",
    "messages",
    "messages_url",
    "stream_messages",
]


def messages_url(upstream: Upstream) -> str:
    base = upstream.base_url.rstrip("/").removesuffix("/v1")
    return f"{base}/v1/messages"


def headers(upstream: Upstream, beta: str | None = None) -> dict[str, str]:
    """The request headers: key, API version, the client's `anthropic-beta` flags, extras."""
    result = {"anthropic-version": ANTHROPIC_VERSION, "content-type": "application/json"}
    if upstream.api_key:
        result["x-api-key"] = upstream.api_key
    if beta:
        result["anthropic-beta"] = beta
    result.update(extra_headers(upstream))
    return result


class AnthropicProvider:
    """OpenAI-shaped requests to Claude models; holds no state, so one instance serves all."""

    async def chat(
        self, http: UpstreamClient, upstream: Upstream, request: ChatRequest
    ) -> ChatCompletion:
        message = await messages(http, upstream, to_messages_body(request))
        if message.get("type") != "message":
            raise UpstreamError(FailureKind.MALFORMED, "the upstream answered no message")
        return to_chat_completion(message)

    async def stream_chat(
        self, http: UpstreamClient, upstream: Upstream, request: ChatRequest
    ) -> AsyncIterator[ChatChunk]:
        # Translate before the first await so a TranslationError is raised by the first
        # `__anext__`, before anything reaches the upstream.
        body = to_messages_body(request)
        translator = AnthropicChunkTranslator()
        async with aclosing(stream_messages(http, upstream, body)) as events:
            async for event, data in events:
                for chunk in translator.feed(event, data):
                    yield chunk

    async def embed(
        self, http: UpstreamClient, upstream: Upstream, request: EmbeddingRequest
    ) -> EmbeddingResponse:
        raise TranslationError("Anthropic has no embeddings API", param="model")


async def messages(
    http: UpstreamClient,
    upstream: Upstream,
    body: dict[str, Any],
    beta: str | None = None,
) -> dict[str, Any]:
    """One non-streaming Messages call; the Message as the vendor returned it."""
    payload = {**body, "model": upstream.model}
    payload.pop("stream", None)
    return await post_json(
        http,
        messages_url(upstream),
        headers=headers(upstream, beta),
        payload=payload,
        timeout_s=upstream.timeout_s,
    )


async def count_tokens(
    http: UpstreamClient,
    upstream: Upstream,
    body: dict[str, Any],
    beta: str | None = None,
) -> dict[str, Any]:
    """The vendor's own count of a Messages body's input tokens (`{"input_tokens": n}`)."""
    return await post_json(
        http,
        messages_url(upstream) + "/count_tokens",
        headers=headers(upstream, beta),
        payload={**body, "model": upstream.model},
        timeout_s=upstream.timeout_s,
    )


async def stream_messages(
    http: UpstreamClient,
    upstream: Upstream,
    body: dict[str, Any],
    beta: str | None = None,
) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
    """A streaming Messages call: (event name, data) as received, `ping`s included, ending with
    `message_stop`. A mid-stream `error` event, or a stream that ends before `message_stop`,
    raises `UpstreamError` so the gateway records the failure and writes its own error event."""
    payload = orjson.dumps({**body, "model": upstream.model, "stream": True})
    async with upstream_post(
        http,
        messages_url(upstream),
        headers=headers(upstream, beta),
        body=payload,
        timeout_s=upstream.timeout_s,
    ) as response:
        async for event, raw in sse_events(response):
            data = json_object(raw, "the upstream sent a malformed event")
            name = event or str(data.get("type") or "")
            if name == "error":
                raise stream_error(data)
            yield name, data
            if name == "message_stop":
                await read_rest(response)
                return
    raise UpstreamError(FailureKind.CONNECTION, "the upstream stream ended before message_stop")
