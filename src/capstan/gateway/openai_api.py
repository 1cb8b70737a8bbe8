"""The OpenAI dialect: `/v1/chat/completions` and `/v1/embeddings`.

Plain Starlette endpoints (no pydantic model of the body on the hot path). Every response
carries `x-capstan-request-id`, and every served call `x-capstan-deployment` and
`x-capstan-attempts`; every failure is OpenAI's error object, so the official SDK raises its own
exception class for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from capstan.gateway import validation
from capstan.gateway.config.snapshot import Deployment
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
from capstan.gateway.providers.base import WireJSON
from capstan.gateway.recording import CallRecord
from capstan.prompts.serving import apply_openai


def openai_endpoint(route: str, handler: Handler) -> Endpoint:
    return dialect_endpoint(route, handler, GatewayError.openai_body)


async def chat_completions(request: Request, record: CallRecord) -> Response:
    admitted = await admit(request, record, validation.chat_request, prompts=apply_openai)
    gateway, body = admitted.gateway, admitted.body
    if body.get("stream"):
        return await _stream_chat(admitted, record)

    def call(deployment: Deployment) -> Awaitable[dict[str, Any]]:  # not async: a frame less
        return gateway.provider(deployment.kind).chat(gateway.http, deployment.upstream, body)

    completion, served = await admitted.attempts.answer(call)
    record.openai_usage(completion.get("usage"))
    record.answered(completion)
    return json_response(completion, headers=served_headers(record, served))


async def _stream_chat(admitted: Admitted, record: CallRecord) -> Response:
    gateway, body = admitted.gateway, admitted.body
    wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def open_stream(deployment: Deployment) -> AsyncIterator[dict[str, Any]]:
        provider = gateway.provider(deployment.kind)
        return provider.stream_chat(gateway.http, deployment.upstream, body)

    def encode(chunk: dict[str, Any]) -> bytes | None:
        # Adapters always end with a usage chunk (for pricing); the client gets it on request.
        if chunk.get("usage") and not chunk.get("choices"):
            record.openai_usage(chunk["usage"])
            if not wants_usage:
                return None
        else:
            for piece in _delta_text(chunk):
                record.streamed(piece)
        raw = chunk.raw if isinstance(chunk, WireJSON) else orjson.dumps(chunk)
        return b"data: " + raw + b"\n\n"

    first, rest, served = await admitted.attempts.stream(open_stream)
    return event_stream(
        gateway,
        first,
        rest,
        record,
        encode=encode,
        error_event=lambda error: b"data: " + orjson.dumps(error.openai_body()) + b"\n\n",
        end=b"data: [DONE]\n\n",
        headers=served_headers(record, served),
    )


def _delta_text(chunk: dict[str, Any]) -> list[str]:
    return [
        content
        for choice in chunk.get("choices") or ()
        if isinstance(content := (choice.get("delta") or {}).get("content"), str)
    ]


async def embeddings(request: Request, record: CallRecord) -> Response:
    admitted = await admit(request, record, validation.embeddings_request)
    gateway = admitted.gateway

    async def call(deployment: Deployment) -> dict[str, Any]:
        provider = gateway.provider(deployment.kind)
        return await provider.embed(gateway.http, deployment.upstream, admitted.body)

    result, served = await admitted.attempts.answer(call)
    record.openai_usage(result.get("usage"))
    return json_response(result, headers=served_headers(record, served))


routes = [
    Route(
        "/v1/chat/completions",
        openai_endpoint("chat.completions", chat_completions),
        methods=["POST"],
    ),
    Route("/v1/embeddings", openai_endpoint("embeddings", embeddings), methods=["POST"]),
]
