"""`/api/v1/providers`, `/deployments`, `/aliases`, `/config/apply` and `/catalog`.

Resources are addressed by name (names may hold '/' and ':', as model ids do, so the name is
the rest of the path). A provider's key is write-only: views show `env:NAME`, `secret:NAME` or
`stored`, never the key.

No `from __future__ import annotations` here: the routes of each kind are built by one function
whose body type is a variable, which FastAPI must see as a class, not as a string.
"""

import uuid
from datetime import date, datetime
from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from capstan.api.auth import authorize, services_of
from capstan.api.pagination import Page, PageParams, page_of, page_params
from capstan.gateway.catalog import default_catalog
from capstan.gateway.config.apply import apply_document
from capstan.gateway.config.plan import Kind
from capstan.gateway.config.specs import (
    NAME_PATTERN,
    AliasSpec,
    DeploymentSpec,
    ProviderSpec,
    Strategy,
    TargetSpec,
)
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.services import Services

router = APIRouter()

Svc = Annotated[Services, Depends(services_of)]
Paging = Annotated[PageParams, Depends(page_params)]
Reader = Annotated[Principal, Depends(authorize(Permission.GATEWAY_READ))]
Writer = Annotated[Principal, Depends(authorize(Permission.GATEWAY_WRITE))]
ResourceName = Annotated[str, PathParam(min_length=1, max_length=100, pattern=NAME_PATTERN)]
MAX_DOCUMENT = 1_000_000


class View(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    created_at: datetime
    updated_at: datetime


class ProviderOut(View):
    kind: str
    base_url: str | None = Field(description="As configured; null means the kind's default.")
    effective_base_url: str | None = Field(description="Where requests go.")
    api_key: str | None = Field(description="`env:NAME`, `secret:NAME` or `stored`; never a key.")
    options: dict[str, str]


class DeploymentOut(View):
    provider: str
    model: str
    timeout_s: float
    max_concurrency: int | None
    max_retries: int
    stream_idle_timeout_s: float | None
    options: dict[str, str]


class AliasOut(View):
    strategy: Strategy
    targets: list[TargetSpec]
    fallbacks: list[str]
    fallback_on_content_policy: bool


class ApplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document: str = Field(max_length=MAX_DOCUMENT, description="The YAML file's text.")
    dry_run: bool = False
    prune: bool = Field(default=False, description="Delete what the document omits.")


class FieldChangeOut(BaseModel):
    field: str
    before: Any
    after: Any


class ChangeOut(BaseModel):
    action: str
    kind: str
    name: str
    diff: list[FieldChangeOut]


class ApplyOut(BaseModel):
    changes: list[ChangeOut]
    unchanged: int
    applied: bool


class CatalogModelOut(BaseModel):
    id: str
    vendor: str
    provider_kind: str
    display_name: str
    mode: str
    context_window: int
    max_output_tokens: int | None
    modalities: dict[str, list[str]]
    supports_tools: bool
    supports_streaming: bool
    prices: dict[str, str | None] = Field(description="USD per million tokens, decimal strings.")
    effective_date: date
    aliases: list[str]


class CatalogOut(BaseModel):
    items: list[CatalogModelOut]


def _routes(kind: Kind, plural: str, spec: type[BaseModel], out: type[View]) -> None:
    """The five routes of one resource kind."""
    tags: list[str | Enum] = [plural]

    def create(body: spec, svc: Svc, who: Writer) -> Any:  # type: ignore[valid-type]
        return svc.gateway.create(who, body).view()

    def list_all(svc: Svc, who: Reader, paging: Paging) -> Any:
        resources = svc.gateway.list(who, kind, paging.cursor, paging.limit)
        return page_of(resources, paging, lambda r: out.model_validate(r.view()))

    def get(name: ResourceName, svc: Svc, who: Reader) -> Any:
        return svc.gateway.get(who, kind, name).view()

    def replace(name: ResourceName, body: spec, svc: Svc, who: Writer) -> Any:  # type: ignore[valid-type]
        return svc.gateway.replace(who, name, body).view()

    def delete(name: ResourceName, svc: Svc, who: Writer) -> Response:
        svc.gateway.delete(who, kind, name)
        return Response(status_code=204)

    path = f"/{plural}"
    router.add_api_route(
        path, create, methods=["POST"], status_code=201, response_model=out, tags=tags,
        name=f"create_{kind}",
    )  # fmt: skip
    router.add_api_route(
        path, list_all, methods=["GET"], response_model=Page[out], tags=tags,  # type: ignore[valid-type]
        name=f"list_{plural}",
    )  # fmt: skip
    item = path + "/{name:path}"
    router.add_api_route(
        item, get, methods=["GET"], response_model=out, tags=tags, name=f"get_{kind}"
    )
    router.add_api_route(
        item, replace, methods=["PUT"], response_model=out, tags=tags, name=f"replace_{kind}"
    )
    router.add_api_route(
        item, delete, methods=["DELETE"], status_code=204, response_class=Response, tags=tags,
        name=f"delete_{kind}",
    )  # fmt: skip


_routes("provider", "providers", ProviderSpec, ProviderOut)
_routes("deployment", "deployments", DeploymentSpec, DeploymentOut)
_routes("alias", "aliases", AliasSpec, AliasOut)


@router.post("/config/apply", response_model=ApplyOut, tags=["config"])
def apply_config(body: ApplyIn, svc: Svc, who: Reader) -> Any:
    """Plan a `capstan apply` document and, unless `dry_run`, apply it in one transaction."""
    result = apply_document(svc.gateway, who, body.document, dry_run=body.dry_run, prune=body.prune)
    return result.as_dict()


@router.get("/catalog", response_model=CatalogOut, tags=["catalog"])
def list_catalog(_who: Reader, vendor: Annotated[str | None, Query(max_length=50)] = None) -> Any:
    """The shipped model catalog (list prices per million tokens), optionally one vendor's."""
    catalog = default_catalog()
    models = catalog.by_vendor(vendor) if vendor else tuple(catalog)
    return {"items": [m.as_dict() for m in models]}
