"""The simulator's OpenAI wire format: `/v1/chat/completions`, `/v1/embeddings`, `/v1/models`,
and the same operations under Azure OpenAI's deployment paths.

Every call goes through one gate, in the order the real API checks: credentials, a JSON body,
the operation's own validation, the model's existence (names starting `unknown-` do not exist),
the model's context window, then the faults set for the model (latency, hangs, 429 bursts,
errors). Whatever fails is answered with OpenAI's error body and headers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from capstan.testing.simulator import openai_chat, openai_completion, openai_embeddings
from capstan.testing.simulator.common import presented_credential, read_json, rejected
from capstan.testing.simulator.openai_errors import (
    OpenAIError,
    content_policy_violation,
    context_length_exceeded,
    fault_error,
    invalid_api_key,
    model_not_found,
    not_json,
    response_headers,
)
from capstan.testing.simulator.state import SimulatorState

MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "o3-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
)
MODEL_CREATED = 1_715_367_049
UNKNOWN_PREFIX = "unknown-"

Respond = Callable[[dict[str, Any], str, SimulatorState, dict[str, str]], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Operation:
    """One OpenAI operation: how to validate its body, how long its longest prompt is (for the
    context window), and how to answer it."""

    validate: Callable[[dict[str, Any]], None]
    prompt_tokens: Callable[[dict[str, Any]], int]
    respond: Respond


CHAT = Operation(openai_chat.validate_chat, openai_chat.prompt_tokens, openai_completion.respond)
EMBEDDINGS = Operation(
    openai_embeddings.validate_embeddings,
    lambda body: max(openai_embeddings.input_tokens(body)),
    openai_embeddings.respond,
)


def routes(state: SimulatorState) -> list[BaseRoute]:
    azure = "/openai/deployments/{deployment}"
    return [
        Route("/v1/chat/completions", _endpoint(state, CHAT), methods=["POST"]),
        Route("/v1/embeddings", _endpoint(state, EMBEDDINGS), methods=["POST"]),
        Route("/v1/models", _list_models(state), methods=["GET"]),
        Route("/v1/models/{model:path}", _retrieve_model(state), methods=["GET"]),
        Route(f"{azure}/chat/completions", _endpoint(state, CHAT, azure=True), methods=["POST"]),
        Route(f"{azure}/embeddings", _endpoint(state, EMBEDDINGS, azure=True), methods=["POST"]),
    ]


def _endpoint(state: SimulatorState, operation: Operation, *, azure: bool = False) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        body = await read_json(request, state)
        if azure and isinstance(body, dict):  # Azure serves the deployment, whatever the body says
            body = {**body, "model": request.path_params["deployment"]}
        headers = response_headers()
        try:
            model = await _admit(request, state, operation, body, azure)
            return await operation.respond(body, model, state, headers)
        except OpenAIError as error:
            return error.response(headers)

    return endpoint


async def _admit(
    request: Request, state: SimulatorState, operation: Operation, body: Any, azure: bool
) -> str:
    """Check the call as OpenAI would and apply the model's faults; returns the model."""
    if azure:
        _check_azure(request)
    else:
        credential = presented_credential(request, "authorization")
        if rejected(credential):
            raise invalid_api_key(credential)
    if not isinstance(body, dict):
        raise not_json()
    operation.validate(body)
    model = str(body["model"])
    if model.startswith(UNKNOWN_PREFIX):
        raise model_not_found(model)
    window = state.faults_for(model).context_window
    if window is not None:
        tokens = operation.prompt_tokens(body)
        if tokens > window:
            raise context_length_exceeded(window, tokens)
    if state.faults_for(model).refuse_content:
        raise content_policy_violation()
    failure = await state.before_response(model)
    if failure is not None:
        raise fault_error(failure)
    return model


def _check_azure(request: Request) -> None:
    """Azure wants an `api-version` and the key in `api-key` (or an Entra ID bearer token)."""
    if not request.query_params.get("api-version"):
        raise OpenAIError(
            400,
            "Missing required query parameter: api-version.",
            param="api-version",
            code="missing_required_parameter",
        )
    if rejected(presented_credential(request, "api-key", "authorization")):
        raise OpenAIError(
            401,
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
            "provide a valid key for an active subscription and use a correct regional API "
            "endpoint for your resource.",
            code="401",
        )


def _model_object(model: str) -> dict[str, Any]:
    owner = "system" if model.startswith("text-embedding") else "openai"
    return {"id": model, "object": "model", "created": MODEL_CREATED, "owned_by": owner}


def _list_models(state: SimulatorState) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        await read_json(request, state)
        headers = response_headers()
        credential = presented_credential(request, "authorization")
        if rejected(credential):
            return invalid_api_key(credential).response(headers)
        data = [_model_object(model) for model in MODELS]
        return JSONResponse({"object": "list", "data": data}, headers=headers)

    return endpoint


def _retrieve_model(state: SimulatorState) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        await read_json(request, state)
        headers = response_headers()
        model = str(request.path_params["model"])
        try:
            credential = presented_credential(request, "authorization")
            if rejected(credential):
                raise invalid_api_key(credential)
            if model not in MODELS:
                raise model_not_found(model)
            failure = await state.before_response(model)
            if failure is not None:
                raise fault_error(failure)
        except OpenAIError as error:
            return error.response(headers)
        return JSONResponse(_model_object(model), headers=headers)

    return endpoint
