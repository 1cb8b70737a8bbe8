"""`GET /v1/models[/{id}]`, the one path both dialects share: the aliases and deployments a key
may call. The Anthropic SDK always sends `anthropic-version`, so a request carrying it gets
Anthropic's model objects, list page and error shape; every other client gets OpenAI's."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from capstan.gateway.config.snapshot import Alias, RoutingTable
from capstan.gateway.edge import (
    Endpoint,
    Handler,
    authenticate,
    dialect_endpoint,
    gateway_of,
    json_response,
)
from capstan.gateway.errors import GatewayError
from capstan.gateway.recording import CallRecord

ALIAS_OWNER = "capstan"
REGISTRY_OWNER = "capstan-registry"
EPOCH = "1970-01-01T00:00:00Z"  # the gateway does not know when a vendor released a model


def _anthropic(request: Request) -> bool:
    return "anthropic-version" in request.headers


def _entry(name: str, owner: str, anthropic: bool) -> dict[str, Any]:
    if anthropic:
        return {"type": "model", "id": name, "display_name": name, "created_at": EPOCH}
    return {"id": name, "object": "model", "created": 0, "owned_by": owner}


def _owners(table: RoutingTable) -> dict[str, str]:
    """Aliases and deployments, then the registry's models (served at `/v2/models/{name}`),
    so one listing shows every model the key may call."""
    owners = {name: REGISTRY_OWNER for name in table.models.models}
    owners.update({name: ALIAS_OWNER for name in table.aliases})
    owners.update({name: d.provider for name, d in table.deployments.items()})
    return dict(sorted(owners.items()))


async def list_models(request: Request, record: CallRecord) -> Response:
    gateway = gateway_of(request)
    await authenticate(gateway.services, request)
    anthropic = _anthropic(request)
    owners = _owners(await gateway.routing_table())
    data = [_entry(name, owner, anthropic) for name, owner in owners.items()]
    if anthropic:
        page: dict[str, Any] = {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
    else:
        page = {"object": "list", "data": data}
    return json_response(page, headers={"x-capstan-request-id": record.id})


async def get_model(request: Request, record: CallRecord) -> Response:
    gateway = gateway_of(request)
    await authenticate(gateway.services, request)
    name = request.path_params["model"]
    found = (await gateway.routing_table()).resolve(name)
    if found is None:
        raise GatewayError(
            404, f"the model `{name}` does not exist", param="model", code="model_not_found"
        )
    owner = ALIAS_OWNER if isinstance(found, Alias) else found.provider
    entry = _entry(name, owner, _anthropic(request))
    return json_response(entry, headers={"x-capstan-request-id": record.id})


def either_dialect(handler: Handler) -> Endpoint:
    # Not model calls: listing the catalogue leaves no request event.
    openai_style = dialect_endpoint(None, handler, GatewayError.openai_body)
    anthropic_style = dialect_endpoint(None, handler, GatewayError.anthropic_body)

    async def endpoint(request: Request) -> Response:
        chosen = anthropic_style if _anthropic(request) else openai_style
        return await chosen(request)

    return endpoint


routes = [
    Route("/v1/models", either_dialect(list_models), methods=["GET"]),
    Route("/v1/models/{model:path}", either_dialect(get_model), methods=["GET"]),
]
