"""The simulator's Anthropic wire format: `POST /v1/messages` (whole or streamed) and
`POST /v1/messages/count_tokens`.

Every call goes through one gate, in the order the real API checks: credentials (`x-api-key`, or
a bearer token), the `anthropic-version` header, a JSON body, the request's validation, the
model's existence (names starting `unknown-` do not exist), the model's context window, then the
faults set for the model. Failures are Anthropic's error body,
`{"type": "error", "error": {"type", "message"}, "request_id"}`, with the matching status, and
every response carries `request-id` and the `anthropic-ratelimit-*` headers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from capstan.testing.simulator import anthropic_reply
from capstan.testing.simulator.anthropic_request import (
    InvalidRequest,
    input_tokens,
    validate_messages,
)
from capstan.testing.simulator.common import presented_credential, read_json, rejected
from capstan.testing.simulator.state import SimulatorState

UNKNOWN_PREFIX = "unknown-"
REQUEST_LIMIT = 4_000
TOKEN_LIMIT = 2_000_000
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
ERROR_MESSAGES = {
    403: "Your API key does not have permission to use the specified resource.",
    429: "Number of requests has exceeded your rate limit. Please try again later.",
    500: "Internal server error",
    529: "Overloaded",
}

Endpoint = Callable[[Request], Awaitable[Response]]


class AnthropicError(Exception):
    """A failure to answer with Anthropic's error body; raised while handling a call and turned
    into a response in one place."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    @property
    def error_type(self) -> str:
        if self.status in ERROR_TYPES:
            return ERROR_TYPES[self.status]
        return "api_error" if self.status >= 500 else "invalid_request_error"

    def response(self, headers: dict[str, str]) -> JSONResponse:
        body = {
            "type": "error",
            "error": {"type": self.error_type, "message": self.message},
            "request_id": headers["request-id"],
        }
        return JSONResponse(body, status_code=self.status, headers=headers | self.headers)


def routes(state: SimulatorState) -> list[BaseRoute]:
    return [
        Route("/v1/messages", _endpoint(state, counting=False), methods=["POST"]),
        Route("/v1/messages/count_tokens", _endpoint(state, counting=True), methods=["POST"]),
    ]


def response_headers(remaining: int = REQUEST_LIMIT - 1, reset_s: float = 0.0) -> dict[str, str]:
    """The headers Anthropic puts on every answer (rate-limit state as if the quota were ample,
    unless a 429 says otherwise)."""
    reset = (datetime.now(UTC) + timedelta(seconds=reset_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "request-id": anthropic_reply.new_id("req_"),
        "anthropic-ratelimit-requests-limit": str(REQUEST_LIMIT),
        "anthropic-ratelimit-requests-remaining": str(remaining),
        "anthropic-ratelimit-requests-reset": reset,
        "anthropic-ratelimit-tokens-limit": str(TOKEN_LIMIT),
        "anthropic-ratelimit-tokens-remaining": str(TOKEN_LIMIT),
        "anthropic-ratelimit-tokens-reset": reset,
    }


def _endpoint(state: SimulatorState, *, counting: bool) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        body = await read_json(request, state)
        headers = response_headers()
        try:
            model = await _admit(request, state, body, counting)
        except AnthropicError as error:
            return error.response(headers)
        if counting:
            return JSONResponse({"input_tokens": input_tokens(body)}, headers=headers)
        return await anthropic_reply.respond(body, model, state, headers)

    return endpoint


async def _admit(request: Request, state: SimulatorState, body: Any, counting: bool) -> str:
    """Check the call as Anthropic would and apply the model's faults; returns the model."""
    credential = presented_credential(request, "x-api-key", "authorization")
    if credential is None:
        raise AnthropicError(401, "x-api-key header is required")
    if rejected(credential):
        raise AnthropicError(401, "invalid x-api-key")
    if not request.headers.get("anthropic-version"):
        raise AnthropicError(400, "anthropic-version: header is required")
    if not isinstance(body, dict):
        raise AnthropicError(400, "There was an error parsing the body of your request.")
    try:
        validate_messages(body, needs_max_tokens=not counting)
    except InvalidRequest as exc:
        raise AnthropicError(400, str(exc)) from exc
    model = str(body["model"])
    if model.startswith(UNKNOWN_PREFIX):
        raise AnthropicError(404, f"model: {model}")
    window = state.faults_for(model).context_window
    if window is not None:
        tokens = input_tokens(body)
        if tokens > window:
            raise AnthropicError(400, f"prompt is too long: {tokens} tokens > {window} maximum")
    failure = await state.before_response(model)
    if failure is None:
        return model
    status, retry_after = failure.status, failure.retry_after_s
    if status == 429:
        limited = response_headers(remaining=0, reset_s=retry_after)
        del limited["request-id"]
        raise AnthropicError(
            429, ERROR_MESSAGES[429], limited | {"retry-after": f"{retry_after:g}"}
        )
    raise AnthropicError(status, ERROR_MESSAGES.get(status, f"Request failed ({status})"))
