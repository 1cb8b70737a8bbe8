"""The OpenAI dialect: `/v1/chat/completions` and `/v1/embeddings`.

Plain Starlette endpoints (no pydantic model of the body on the hot path). Every response
carries `x-capstan-request-id`, and every served call `x-capstan-deployment` and
`x-capstan-attempts`; every failure is OpenAI's error object, so the official SDK raises its own
exception class for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from capstan.gateway import validation
from capstan.gateway.attempts import first_answer, first_stream
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


def openai_endpoint(handler: Handler) -> Endpoint:
    return dialect_endpoint(handler, GatewayError.openai_body)


async def chat_completions(request: Request, request_id: str) -> Response:
    admitted = await admit(request, validation.chat_request)
    gateway, body = admitted.gateway, admitted.body
    if body.get("stream"):
        return await _stream_chat(admitted, request_id)

    async def call(deployment: Deployment) -> dict[str, Any]:
        provider = gateway.provider(deployment.kind)
        return await provider.chat(gateway.http, deployment.upstream, body)

    completion, served = await first_answer(admitted.targets, call, gateway.latency)
    return json_response(completion, headers=served_headers(request_id, served))


async def _stream_chat(admitted: Admitted, request_id: str) -> Response:
    gateway, body = admitted.gateway, admitted.body
    wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def open_stream(deployment: Deployment) -> AsyncIterator[dict[str, Any]]:
        provider = gateway.provider(deployment.kind)
        return provider.stream_chat(gateway.http, deployment.upstream, body)

    def encode(chunk: dict[str, Any]) -> bytes | None:
        # Adapters always end with a usage chunk (for pricing); the client gets it on request.
        if not wants_usage and chunk.get("usage") and not chunk.get("choices"):
            return None
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    first, rest, served = await first_stream(admitted.targets, open_stream, gateway.latency)
    return event_stream(
        first,
        rest,
        encode=encode,
        error_event=lambda error: b"data: " + orjson.dumps(error.openai_body()) + b"\n\n",
        end=b"data: [DONE]\n\n",
        headers=served_headers(request_id, served),
    )


async def embeddings(request: Request, request_id: str) -> Response:
    admitted = await admit(request, validation.embeddings_request)
    gateway = admitted.gateway

    async def call(deployment: Deployment) -> dict[str, Any]:
        provider = gateway.provider(deployment.kind)
        return await provider.embed(gateway.http, deployment.upstream, admitted.body)

    result, served = await first_answer(admitted.targets, call, gateway.latency)
    return json_response(result, headers=served_headers(request_id, served))


routes = [
    Route("/v1/chat/completions", openai_endpoint(chat_completions), methods=["POST"]),
    Route("/v1/embeddings", openai_endpoint(embeddings), methods=["POST"]),
]
