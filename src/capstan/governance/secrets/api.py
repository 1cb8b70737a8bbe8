"""`/api/v1/secrets`: store, list and delete secrets. Write-only by design: no route returns a
value, a ciphertext or a nonce, so a leaked admin key can replace secrets but never read them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from capstan.api.auth import authorize, services_of
from capstan.governance.secrets.vault import MAX_DESCRIPTION, MAX_NAME, MAX_VALUE, NAME_PATTERN
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.services import Services

router = APIRouter(tags=["secrets"])

Svc = Annotated[Services, Depends(services_of)]
Reader = Annotated[Principal, Depends(authorize(Permission.SECRETS_READ))]
Writer = Annotated[Principal, Depends(authorize(Permission.SECRETS_WRITE))]
SecretName = Annotated[
    str, PathParam(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN.pattern)
]


class SecretIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: str = Field(min_length=1, max_length=MAX_VALUE, description="Stored encrypted.")
    description: str = Field(default="", max_length=MAX_DESCRIPTION)


class SecretOut(BaseModel):
    """A secret's metadata; `key_id` names the master key that seals it (useful after a
    rotation) and reveals nothing about the key or the value."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str
    key_id: str
    created_at: datetime
    updated_at: datetime


class SecretPage(BaseModel):
    items: list[SecretOut]
    next_cursor: str | None = None


@router.put(
    "/secrets/{name}",
    response_model=SecretOut,
    responses={201: {"model": SecretOut, "description": "Created"}},
)
def put_secret(name: SecretName, body: SecretIn, svc: Svc, who: Writer, response: Response) -> Any:
    """Create (201) or replace (200) a secret."""
    row = svc.vault.put(who, name, body.value, body.description)
    response.status_code = 201 if row.created_at == row.updated_at else 200
    return SecretOut.model_validate(row)


@router.get("/secrets", response_model=SecretPage)
def list_secrets(svc: Svc, who: Reader) -> Any:
    return SecretPage(items=[SecretOut.model_validate(row) for row in svc.vault.list(who)])


@router.delete("/secrets/{name}", status_code=204, response_class=Response)
def delete_secret(name: SecretName, svc: Svc, who: Writer) -> Response:
    svc.vault.delete(who, name)
    return Response(status_code=204)
