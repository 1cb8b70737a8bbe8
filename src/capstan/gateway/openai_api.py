"""The OpenAI dialect: `/v1/chat/completions`, `/v1/embeddings`, `/v1/models[/{id}]`.

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
from capstan.gateway.config.snapshot import Alias, Deployment
from capstan.gateway.edge import (
    Admitted,
    Endpoint,
    Handler,
    admit,
    authenticate,
    dialect_endpoint,
    event_stream,
    gateway_of,
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


def _model_entry(name: str, owner: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": owner}


async def list_models(request: Request, request_id: str) -> Response:
    gateway = gateway_of(request)
    await authenticate(gateway.services, request)
    table = await gateway.routing_table()
    data = [_model_entry(name, "capstan") for name in sorted(table.aliases)]
    data += [_model_entry(name, d.provider) for name, d in sorted(table.deployments.items())]
    return json_response(
        {"object": "list", "data": data}, headers={"x-capstan-request-id": request_id}
    )


async def get_model(request: Request, request_id: str) -> Response:
    gateway = gateway_of(request)
    await authenticate(gateway.services, request)
    name = request.path_params["model"]
    found = (await gateway.routing_table()).resolve(name)
    if found is None:
        raise GatewayError(
            404, f"the model `{name}` does not exist", param="model", code="model_not_found"
        )
    owner = "capstan" if isinstance(found, Alias) else found.provider
    return json_response(_model_entry(name, owner), headers={"x-capstan-request-id": request_id})


routes = [
    Route("/v1/chat/completions", openai_endpoint(chat_completions), methods=["POST"]),
    Route("/v1/embeddings", openai_endpoint(embeddings), methods=["POST"]),
    Route("/v1/models", openai_endpoint(list_models), methods=["GET"]),
    Route("/v1/models/{model:path}", openai_endpoint(get_model), methods=["GET"]),
]
