"""`/api/v1/models` and `/api/v1/uploads`: register versions (upload the artifact, then the
version naming it), read models and versions, move aliases, change a version's status.

Reading needs `registry:read` (every role but `service`); changing needs `registry:write`
(developers and admins). Every change is audited.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from capstan.api.auth import authorize, services_of
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.registry.service import VersionRequest
from capstan.services import Services
from capstan.store.schema import ModelVersion, RegisteredModel

router = APIRouter(tags=["registry"])
Svc = Annotated[Services, Depends(services_of)]
Reader = Annotated[Principal, Depends(authorize(Permission.REGISTRY_READ))]
Writer = Annotated[Principal, Depends(authorize(Permission.REGISTRY_WRITE))]


class UploadOut(BaseModel):
    upload: str
    filename: str
    sha256: str
    size: int


class LineageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    train_data_uri: str | None = Field(default=None, max_length=1000)
    train_data_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    code_commit: str | None = Field(default=None, max_length=100)
    parent_version: int | None = Field(default=None, ge=1)


class VersionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    upload: str = Field(description="the id `POST /api/v1/uploads` returned")
    flavor: str = Field(description="onnx, sklearn, xgboost or lightgbm")
    signature: dict[str, Any] | None = Field(
        default=None, description="inputs/outputs (OIP datatypes); ONNX models describe their own"
    )
    params: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    lineage: LineageIn = Field(default_factory=LineageIn)
    profile: dict[str, Any] | None = Field(
        default=None, description="the reference data profile of a training sample"
    )
    description: str | None = Field(default=None, max_length=2000)
    aliases: list[str] = Field(default_factory=list, max_length=20)
    trusted_types: list[str] = Field(
        default_factory=list,
        description="types a skops artifact may load besides scikit-learn's, numpy's, scipy's",
    )
    columns: list[str] = Field(
        default_factory=list,
        description="an ONNX model's feature names, in input order (for the records form)",
    )
    owner: str | None = Field(default=None, max_length=200)
    risk_tier: str | None = Field(default=None, description="low, medium, high or critical")
    intended_use: str | None = Field(default=None, max_length=5000)
    project: str | None = None


class VersionOut(BaseModel):
    name: str
    version: int
    flavor: str
    status: str
    aliases: list[str]
    artifact_uri: str
    artifact_sha256: str
    artifact_size: int
    signature: dict[str, Any]
    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]
    lineage: dict[str, Any]
    description: str | None
    created_by: str
    created_at: datetime
    profile: dict[str, Any] | None = None


class ModelOut(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    intended_use: str | None
    owner: str | None
    risk_tier: str | None
    project_id: uuid.UUID | None
    latest_version: int
    aliases: dict[str, int]
    created_at: datetime


class ModelDetailOut(ModelOut):
    versions: list[VersionOut]


class AliasIn(BaseModel):
    version: int = Field(ge=1)


class StatusIn(BaseModel):
    status: str = Field(description="registered, staging, production, archived or retired")


def version_view(
    name: str, row: ModelVersion, aliases: dict[str, int], *, profile: bool = False
) -> VersionOut:
    return VersionOut(
        name=name,
        version=row.version,
        flavor=row.flavor,
        status=row.status,
        aliases=sorted(a for a, n in aliases.items() if n == row.version),
        artifact_uri=row.artifact_uri,
        artifact_sha256=row.artifact_sha256,
        artifact_size=row.artifact_size,
        signature=row.signature,
        params=row.params or {},
        metrics=row.metrics or {},
        tags=row.tags or {},
        lineage=row.lineage or {},
        description=row.description,
        created_by=row.created_by,
        created_at=row.created_at,
        profile=row.profile if profile else None,
    )


def model_view(model: RegisteredModel, latest: int, aliases: dict[str, int]) -> ModelOut:
    return ModelOut(
        id=model.id,
        name=model.name,
        description=model.description,
        intended_use=model.intended_use,
        owner=model.owner,
        risk_tier=model.risk_tier,
        project_id=model.project_id,
        latest_version=latest,
        aliases=aliases,
        created_at=model.created_at,
    )


@router.post("/uploads", response_model=UploadOut, status_code=status.HTTP_201_CREATED)
async def upload_artifact(
    request: Request,
    services: Svc,
    principal: Writer,
    filename: Annotated[str, Header(alias="x-capstan-filename", description="e.g. model.onnx")],
) -> UploadOut:
    """The artifact's bytes as the body (any content type); the registration names it next."""
    upload = await services.uploads.receive(filename, request.stream())
    return UploadOut(
        upload=upload.id, filename=upload.filename, sha256=upload.sha256, size=upload.size
    )


@router.post(
    "/models/{name}/versions", response_model=VersionOut, status_code=status.HTTP_201_CREATED
)
def register_version(name: str, body: VersionIn, services: Svc, principal: Writer) -> VersionOut:
    """A new version from an upload: scanned (unsafe pickles refused with the scanner's
    report, never executed), loaded once, stored with its SHA-256."""
    request = VersionRequest(
        name=name,
        flavor=body.flavor,
        signature=body.signature,
        params=body.params,
        metrics=body.metrics,
        tags=body.tags,
        lineage=body.lineage.model_dump(exclude_none=True),
        profile=body.profile,
        description=body.description,
        aliases=tuple(body.aliases),
        trusted_types=tuple(body.trusted_types),
        columns=tuple(body.columns),
        owner=body.owner,
        risk_tier=body.risk_tier,
        intended_use=body.intended_use,
        project=body.project,
    )
    try:
        with services.uploads.local_copy(body.upload) as artifact:
            registered = services.registry.register(principal, request, artifact)
    finally:  # registered or refused, an upload is used once
        services.uploads.discard(body.upload)
    return version_view(name, registered.version, registered.aliases)


@router.get("/models", response_model=list[ModelOut])
def list_models(services: Svc, principal: Reader) -> list[ModelOut]:
    return [
        model_view(m, latest, aliases)
        for m, latest, aliases in services.registry.all_models(principal)
    ]


@router.get("/models/{name}", response_model=ModelDetailOut)
def get_model(name: str, services: Svc, principal: Reader) -> ModelDetailOut:
    model, versions, aliases = services.registry.model(principal, name)
    latest = versions[0].version if versions else 0
    return ModelDetailOut(
        **model_view(model, latest, aliases).model_dump(),
        versions=[version_view(name, v, aliases) for v in versions],
    )


@router.get("/models/{name}/versions/{ref}", response_model=VersionOut)
def get_version(name: str, ref: str, services: Svc, principal: Reader) -> VersionOut:
    """A version by number or alias, with its reference data profile."""
    _, row, aliases = services.registry.version(principal, name, ref)
    return version_view(name, row, aliases, profile=True)


@router.put("/models/{name}/aliases/{alias}", response_model=VersionOut)
def set_alias(name: str, alias: str, body: AliasIn, services: Svc, principal: Writer) -> VersionOut:
    """Point an alias at a version; every gateway serves `name@alias` from it next."""
    services.registry.set_alias(principal, name, alias, body.version)
    _, row, aliases = services.registry.version(principal, name, body.version)
    return version_view(name, row, aliases)


@router.delete("/models/{name}/aliases/{alias}", status_code=status.HTTP_204_NO_CONTENT)
def delete_alias(name: str, alias: str, services: Svc, principal: Writer) -> None:
    services.registry.remove_alias(principal, name, alias)


@router.post("/models/{name}/versions/{version}/status", response_model=VersionOut)
def set_status(
    name: str, version: int, body: StatusIn, services: Svc, principal: Writer
) -> VersionOut:
    """Move a version along registered → staging → production → archived → retired."""
    services.registry.set_status(principal, name, version, body.status)
    _, row, aliases = services.registry.version(principal, name, version)
    return version_view(name, row, aliases)


@router.get("/models/{name}/versions/{ref}/card", response_class=Response)
def model_card(
    name: str,
    ref: str,
    services: Svc,
    principal: Reader,
    format: Annotated[str, Query(pattern="^(md|html)$")] = "md",
) -> Response:
    """The version's model card, rendered from the registry as it is now: intended use, owner,
    risk tier, lineage, metrics, signature, reference profile, approvals and status."""
    from capstan.registry.cards import card_html, card_markdown  # Jinja2: on first card

    model, row, aliases = services.registry.version(principal, name, ref)
    latest = services.registry.latest(principal, name)
    model_data = model_view(model, latest, aliases).model_dump(mode="json")
    version_data = version_view(name, row, aliases, profile=True).model_dump(mode="json")
    history = [
        entry.as_dict()
        for resource in (str(model.id), str(row.id))
        for entry in services.audit.query(resource=resource, limit=1000)
    ]
    history.sort(key=lambda entry: entry["seq"])
    if format == "html":
        return Response(card_html(model_data, version_data, audit=history), media_type="text/html")
    text = card_markdown(model_data, version_data, audit=history)
    return Response(text, media_type="text/markdown; charset=utf-8")


@router.get("/models/{name}/diff")
def diff_versions(
    name: str,
    services: Svc,
    principal: Reader,
    from_version: Annotated[int, Query(alias="from", ge=1)],
    to_version: Annotated[int, Query(alias="to", ge=1)],
) -> dict[str, Any]:
    """Two versions side by side: metrics, signature, lineage, parameters, profile."""
    from capstan.registry.cards import version_diff

    found = []
    for number in (from_version, to_version):
        _, row, aliases = services.registry.version(principal, name, number)
        found.append(version_view(name, row, aliases, profile=True).model_dump(mode="json"))
    return version_diff(name, found[0], found[1])
