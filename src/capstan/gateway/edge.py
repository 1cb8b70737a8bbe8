"""What every data-plane route does first and last: read a bounded JSON body, authenticate the
caller for model calls, and write JSON or SSE with orjson (no pydantic on the hot path)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from capstan.api.auth import presented_key
from capstan.errors import CapstanError
from capstan.gateway.errors import GatewayError
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.services import Services


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
