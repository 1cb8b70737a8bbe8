"""The one authorization dependency that guards every `/api` route.

`current_principal` authenticates (401 for a missing, unknown, expired or revoked key) and is
attached to the whole `/api/v1` router, so no route can forget it; `authorize(permission)` adds
the role check (403). Scope checks need the target resource, so the services make them.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request

from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.services import Services

LOCAL_PRINCIPAL = "local_principal"


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def presented_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token:
            return token.strip()
        return None
    return request.headers.get("x-api-key")


def current_principal(request: Request) -> Principal:
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    local: Principal | None = getattr(request.app.state, LOCAL_PRINCIPAL, None)
    principal = local or services_of(request).authenticator.authenticate(presented_key(request))
    request.state.principal = principal
    return principal


def authorize(permission: Permission) -> Callable[[Principal], Principal]:
    def dependency(principal: Principal = Depends(current_principal)) -> Principal:
        principal.require(permission)
        return principal

    return dependency
