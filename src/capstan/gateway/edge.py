"""What every data-plane route does first and last: authenticate the caller for model calls,
read a bounded JSON body, find the deployments to try, and write JSON or SSE with orjson (no
pydantic on the hot path), with errors in the route's dialect."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from capstan.api.auth import presented_key
from capstan.errors import CapstanError
from capstan.gateway.errors import GatewayError
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.ids import new_id
from capstan.services import Services

if TYPE_CHECKING:
    from capstan.gateway.attempts import Served
    from capstan.gateway.config.snapshot import Deployment
    from capstan.gateway.runtime import Gateway

T = TypeVar("T")


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


async def authenticate(services: Services, request: Request) -> Principal:
    """The caller, allowed to invoke models; 401/403 as `GatewayError` for either dialect."""
    try:
        principal = await services.authenticator.authenticate_async(presented_key(request))
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


@dataclass(frozen=True, slots=True)
class Admitted:
    """A request that passed the edge: who asked, for what, and where it may go."""

    gateway: Gateway
    principal: Principal
    body: dict[str, Any]
    model: str
    targets: list[Deployment]


async def admit(request: Request, validate: Callable[[dict[str, Any]], str]) -> Admitted:
    """Authenticate, read and validate the body (`validate` returns the model asked for), and
    resolve the model to the deployments to try, in order."""
    gateway = gateway_of(request)
    principal = await authenticate(gateway.services, request)
    body = await read_json_body(request, gateway.services.settings.max_body_bytes)
    model = validate(body)
    return Admitted(gateway, principal, body, model, await gateway.targets(model))


def event_stream(
    first: T,
    rest: AsyncGenerator[T, None],
    *,
    encode: Callable[[T], bytes | None],
    error_event: Callable[[GatewayError], bytes],
    end: bytes,
    headers: dict[str, str],
) -> StreamingResponse:
    """An SSE response from a stream whose first item already arrived. `encode` frames an item
    (None skips it); a failure after the first byte becomes `error_event`, in the client's
    dialect, and ends the stream; the upstream stream is closed whatever happens, so a client
    that leaves cancels the upstream call."""

    async def frames() -> AsyncIterator[bytes]:
        try:
            item: T | None = first
            while item is not None:
                frame = encode(item)
                if frame is not None:
                    yield frame
                item = await anext(rest, None)
        except Exception as exc:
            yield error_event(GatewayError.of(exc))
            return
        finally:
            await rest.aclose()
        if end:
            yield end

    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        headers={**headers, "cache-control": "no-cache"},
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
