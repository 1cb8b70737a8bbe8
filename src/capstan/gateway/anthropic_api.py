"""The Anthropic dialect: `/v1/messages` and `/v1/messages/count_tokens`.

An Anthropic-SDK client reaching an Anthropic upstream is passed through natively (thinking
signatures, `cache_control`, betas and all); reaching any other upstream, its body is translated
once into the OpenAI shape the adapters take, and the reply (or each streamed chunk) translated
back. Errors are Anthropic's error object, so the SDK raises its own exception classes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from capstan.gateway import validation
from capstan.gateway.attempts import Served, close_stream
from capstan.gateway.config.snapshot import Deployment
from capstan.gateway.dialects.anthropic import (
    AnthropicStreamTranslator,
    sse_bytes,
    to_anthropic_message,
    to_openai_request,
)
from capstan.gateway.edge import (
    Admitted,
    Endpoint,
    Handler,
    admit,
    dialect_endpoint,
    event_stream,
    json_response,
    served_headers,
)
from capstan.gateway.errors import GatewayError
from capstan.gateway.providers import anthropic as anthropic_wire
from capstan.gateway.recording import CallRecord
from capstan.gateway.runtime import Gateway
from capstan.prompts.serving import apply_anthropic

Event = tuple[str, dict[str, Any]]
NATIVE_KIND = "anthropic"
# Rough size of a token for upstreams that cannot count (4 characters, OpenAI's rule of thumb).
CHARS_PER_TOKEN = 4


def anthropic_endpoint(route: str, handler: Handler) -> Endpoint:
    return dialect_endpoint(route, handler, GatewayError.anthropic_body)


def _stop(body: dict[str, Any]) -> list[str] | None:
    stop = body.get("stop_sequences")
    return list(stop) if isinstance(stop, list) else None


async def create_message(request: Request, record: CallRecord) -> Response:
    admitted = await admit(request, record, validation.messages_request, prompts=apply_anthropic)
    gateway, body, model = admitted.gateway, admitted.body, admitted.model
    beta = request.headers.get("anthropic-beta")
    # Translated once, and only when some candidate is not an Anthropic upstream.
    translated: dict[str, Any] | None = None
    if any(d.kind != NATIVE_KIND for d in admitted.targets):
        translated = to_openai_request(body)
    if body.get("stream"):
        return await _stream(admitted, translated, beta, record)

    async def call(deployment: Deployment) -> dict[str, Any]:
        if deployment.kind == NATIVE_KIND:
            return await anthropic_wire.messages(gateway.http, deployment.upstream, body, beta)
        assert translated is not None
        provider = gateway.provider(deployment.kind)
        completion = await provider.chat(gateway.http, deployment.upstream, translated)
        return to_anthropic_message(completion, model, _stop(body))

    message, served = await admitted.attempts.answer(call)
    record.anthropic_usage(message.get("usage"))
    record.answered(message)
    return json_response(message, headers=served_headers(record, served))


async def _stream(
    admitted: Admitted, translated: dict[str, Any] | None, beta: str | None, record: CallRecord
) -> Response:
    gateway, body = admitted.gateway, admitted.body

    def encode(event: Event) -> bytes:
        name, data = event
        if name == "message_start":
            record.anthropic_usage((data.get("message") or {}).get("usage"))
        elif name == "message_delta":
            record.anthropic_usage(data.get("usage"))
        elif name == "content_block_delta":
            delta = data.get("delta") or {}
            if isinstance(delta.get("text"), str):
                record.streamed(delta["text"])
        return sse_bytes(name, data)

    def open_stream(deployment: Deployment) -> AsyncIterator[Event]:
        if deployment.kind == NATIVE_KIND:
            return anthropic_wire.stream_messages(gateway.http, deployment.upstream, body, beta)
        assert translated is not None
        return _translated_stream(gateway, deployment, translated, admitted.model, _stop(body))

    first, rest, served = await admitted.attempts.stream(open_stream)
    return event_stream(
        gateway,
        first,
        rest,
        record,
        encode=encode,
        error_event=lambda error: sse_bytes("error", error.anthropic_body()),
        end=b"",
        headers=served_headers(record, served),
        is_last=lambda event: event[0] == "message_stop",
    )


async def _translated_stream(
    gateway: Gateway,
    deployment: Deployment,
    request: dict[str, Any],
    model: str,
    stop: list[str] | None,
) -> AsyncIterator[Event]:
    translator = AnthropicStreamTranslator(model, stop)
    provider = gateway.provider(deployment.kind)
    chunks = provider.stream_chat(gateway.http, deployment.upstream, request)
    try:
        async for chunk in chunks:
            for event in translator.feed(chunk):
                yield event
    finally:
        await close_stream(chunks)
    for event in translator.finish():
        yield event


async def count_tokens(request: Request, record: CallRecord) -> Response:
    """Anthropic upstreams count exactly; for others the count is an estimate (characters / 4),
    said so in `x-capstan-estimated: true`."""
    admitted = await admit(
        request, record, validation.count_tokens_request, budgeted=False, prompts=apply_anthropic
    )
    gateway, body, targets = admitted.gateway, admitted.body, admitted.targets
    headers = {"x-capstan-request-id": record.id}
    native = next((d for d in targets if d.kind == NATIVE_KIND), None)
    if native is not None:
        record.served_by(Served(native, attempts=1))
        counted = await anthropic_wire.count_tokens(
            gateway.http, native.upstream, body, request.headers.get("anthropic-beta")
        )
        return json_response(counted, headers=headers)
    text = "".join(_texts(body.get("system"))) + "".join(
        "".join(_texts(m.get("content"))) for m in body["messages"]
    )
    estimate = max(1, len(text) // CHARS_PER_TOKEN)
    return json_response(
        {"input_tokens": estimate}, headers={**headers, "x-capstan-estimated": "true"}
    )


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [b.get("text", "") for b in content if isinstance(b, dict)]
    return []


routes = [
    Route("/v1/messages", anthropic_endpoint("messages", create_message), methods=["POST"]),
    Route(
        "/v1/messages/count_tokens",
        anthropic_endpoint("messages.count_tokens", count_tokens),
        methods=["POST"],
    ),
]
