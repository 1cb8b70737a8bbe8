"""What every data-plane route does first and last: read a bounded JSON body, authenticate the
caller for model calls, and write JSON or SSE with orjson (no pydantic on the hot path)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from capstan.api.auth import presented_key
from capstan.errors import CapstanError
from capstan.gateway.errors import GatewayError
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.ids import new_id
from capstan.services import Services

if TYPE_CHECKING:
    from capstan.gateway.attempts import Served
    from capstan.gateway.runtime import Gateway


async def read_json_body(request: Request, limit: int) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise GatewayError(413, f"the body exceeds the {limit}-byte limit", code="body_too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise GatewayError(
                413, f"the body exceeds the {limit}-byte limit", code="body_too_large"
            )
        chunks.append(chunk)
    try:
        body = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, f"the body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise GatewayError(400, "the body must be a JSON object", code="invalid_json")
    return body


def authenticate(services: Services, request: Request) -> Principal:
    """The caller, allowed to invoke models; 401/403 as `GatewayError` for either dialect."""
    try:
        principal = services.authenticator.authenticate(presented_key(request))
        principal.require(Permission.MODELS_INVOKE)
    except CapstanError as exc:
        kind = "authentication_error" if exc.status == 401 else "permission_error"
        code = "invalid_api_key" if exc.status == 401 else "permission_denied"
        raise GatewayError(exc.status, exc.detail, type=kind, code=code) from exc
    return principal


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(data), status_code=status, media_type="application/json", headers=headers
    )


Handler = Callable[[Request, str], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def served_headers(request_id: str, served: Served) -> dict[str, str]:
    return {
        "x-capstan-request-id": request_id,
        "x-capstan-deployment": served.deployment.name,
        "x-capstan-attempts": str(served.attempts),
    }


def dialect_endpoint(
    handler: Handler, error_body: Callable[[GatewayError], dict[str, Any]]
) -> Endpoint:
    """Give the handler a request id and write whatever it raises in the route's dialect, so
    each SDK raises its own exception class."""

    async def endpoint(request: Request) -> Response:
        request_id = str(new_id())
        try:
            return await handler(request, request_id)
        except Exception as exc:
            error = GatewayError.of(exc)
            headers = {"x-capstan-request-id": request_id, **error.headers()}
            return json_response(error_body(error), status=error.status, headers=headers)

    return endpoint
