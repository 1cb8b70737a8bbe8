"""`/api/v1` routes for departments, teams, projects, users and keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from capstan.api.auth import authorize, services_of
from capstan.api.pagination import Page, PageParams, page_of, page_params
from capstan.identity.api_keys import IssuedKey, KeyRequest
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission, Role
from capstan.services import Services
from capstan.store.schema import ApiKey

router = APIRouter()

NAME = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._ -]*$")
REF = Field(default=None, min_length=1, max_length=100)
EMAIL = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class View(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# -- organization tree -----------------------------------------------------------------------


class DepartmentIn(Body):
    name: str = NAME


class TeamIn(Body):
    name: str = NAME
    department: str = Field(min_length=1, max_length=100, description="Department name or id.")


class ProjectIn(Body):
    name: str = NAME
    team: str = Field(min_length=1, max_length=100, description="Team name or id.")
    log_payloads: bool = False
    prompt_approval: bool = Field(
        default=False,
        description="moving the `production` label of this project's prompts needs an approver",
    )


class DepartmentOut(View):
    id: uuid.UUID
    name: str
    created_at: datetime


class TeamOut(DepartmentOut):
    department_id: uuid.UUID


class ProjectOut(TeamOut):
    team_id: uuid.UUID
    log_payloads: bool
    prompt_approval: bool


class UserIn(Body):
    email: str = EMAIL
    name: str = NAME
    department: str | None = REF
    team: str | None = REF


class UserOut(View):
    id: uuid.UUID
    email: str
    name: str
    department_id: uuid.UUID | None
    team_id: uuid.UUID | None
    created_at: datetime


Svc = Annotated[Services, Depends(services_of)]
Paging = Annotated[PageParams, Depends(page_params)]
OrgReader = Annotated[Principal, Depends(authorize(Permission.ORG_READ))]
OrgWriter = Annotated[Principal, Depends(authorize(Permission.ORG_WRITE))]
UserReader = Annotated[Principal, Depends(authorize(Permission.USERS_READ))]
UserWriter = Annotated[Principal, Depends(authorize(Permission.USERS_WRITE))]


@router.post("/departments", status_code=201, response_model=DepartmentOut, tags=["organization"])
def create_department(body: DepartmentIn, svc: Svc, who: OrgWriter) -> Any:
    return svc.directory.create_department(who, body.name)


@router.get("/departments", response_model=Page[DepartmentOut], tags=["organization"])
def list_departments(svc: Svc, who: OrgReader, paging: Paging) -> Any:
    rows = svc.directory.list_departments(who, paging.cursor, paging.limit)
    return page_of(rows, paging, DepartmentOut.model_validate)


@router.post("/teams", status_code=201, response_model=TeamOut, tags=["organization"])
def create_team(body: TeamIn, svc: Svc, who: OrgWriter) -> Any:
    return svc.directory.create_team(who, body.name, body.department)


@router.get("/teams", response_model=Page[TeamOut], tags=["organization"])
def list_teams(svc: Svc, who: OrgReader, paging: Paging) -> Any:
    return page_of(
        svc.directory.list_teams(who, paging.cursor, paging.limit), paging, TeamOut.model_validate
    )


@router.post("/projects", status_code=201, response_model=ProjectOut, tags=["organization"])
def create_project(body: ProjectIn, svc: Svc, who: OrgWriter) -> Any:
    return svc.directory.create_project(
        who,
        body.name,
        body.team,
        log_payloads=body.log_payloads,
        prompt_approval=body.prompt_approval,
    )


@router.get("/projects", response_model=Page[ProjectOut], tags=["organization"])
def list_projects(svc: Svc, who: OrgReader, paging: Paging) -> Any:
    rows = svc.directory.list_projects(who, paging.cursor, paging.limit)
    return page_of(rows, paging, ProjectOut.model_validate)


@router.post("/users", status_code=201, response_model=UserOut, tags=["users"])
def create_user(body: UserIn, svc: Svc, who: UserWriter) -> Any:
    return svc.directory.create_user(
        who, body.email, body.name, department=body.department, team=body.team
    )


@router.get("/users", response_model=Page[UserOut], tags=["users"])
def list_users(svc: Svc, who: UserReader, paging: Paging) -> Any:
    return page_of(
        svc.directory.list_users(who, paging.cursor, paging.limit), paging, UserOut.model_validate
    )


# -- keys ------------------------------------------------------------------------------------


class KeyIn(Body):
    role: Role
    name: str | None = Field(default=None, min_length=1, max_length=100)
    department: str | None = REF
    team: str | None = REF
    project: str | None = REF
    user: str | None = Field(
        default=None, min_length=1, max_length=254, description="User email or id."
    )
    service: str | None = Field(default=None, min_length=1, max_length=100)
    expires_at: datetime | None = None


class KeyOut(View):
    id: uuid.UUID
    name: str
    prefix: str
    role: Role
    scope: str
    department_id: uuid.UUID | None
    team_id: uuid.UUID | None
    project_id: uuid.UUID | None
    user_id: uuid.UUID | None
    service: str | None
    expires_at: datetime | None
    revoked_at: datetime | None
    rotated_from_id: uuid.UUID | None
    created_by: str
    created_at: datetime


class IssuedKeyOut(KeyOut):
    key: str = Field(description="The key itself: shown in this response only, never again.")


class RotateIn(Body):
    grace_seconds: int = Field(default=0, ge=0, le=30 * 86_400)


def _issued(issued: IssuedKey) -> IssuedKeyOut:
    return IssuedKeyOut.model_validate(
        {**KeyOut.model_validate(issued.row).model_dump(), "key": issued.plaintext}
    )


KeyAdmin = Annotated[Principal, Depends(authorize(Permission.KEYS_MANAGE))]


@router.post("/keys", status_code=201, response_model=IssuedKeyOut, tags=["keys"])
def create_key(body: KeyIn, svc: Svc, who: KeyAdmin) -> Any:
    request = KeyRequest(**body.model_dump())
    return _issued(svc.keys.create(who, request))


@router.get("/keys", response_model=Page[KeyOut], tags=["keys"])
def list_keys(
    svc: Svc, who: KeyAdmin, paging: Paging, include_revoked: Annotated[bool, Query()] = False
) -> Any:
    rows = svc.keys.list(who, paging.cursor, paging.limit, include_revoked=include_revoked)
    return page_of(rows, paging, KeyOut.model_validate)


@router.post("/keys/{key_id}/revoke", response_model=KeyOut, tags=["keys"])
def revoke_key(key_id: uuid.UUID, svc: Svc, who: KeyAdmin) -> ApiKey:
    return svc.keys.revoke(who, key_id)


@router.post("/keys/{key_id}/rotate", status_code=201, response_model=IssuedKeyOut, tags=["keys"])
def rotate_key(key_id: uuid.UUID, svc: Svc, who: KeyAdmin, body: RotateIn | None = None) -> Any:
    from datetime import timedelta

    grace = timedelta(seconds=body.grace_seconds) if body and body.grace_seconds else None
    return _issued(svc.keys.rotate(who, key_id, grace=grace))
