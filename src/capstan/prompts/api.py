"""`/api/v1/prompts`: push versions, read them (with ETags, for clients that cache), history,
diffs, labels, rollback and rendering.

Reading needs `prompts:read` (every role, service keys included: applications fetch their
prompts); changing needs `prompts:write`, and moving a `production` label of a project that
asks for approval needs an approver.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, Query, Request, Response, status
from pydantic import BaseModel, Field

from capstan.api.auth import authorize, services_of
from capstan.errors import InvalidInput
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.prompts.documents import parse_document
from capstan.prompts.service import labels_of, parse_ref
from capstan.prompts.snapshot import served_version
from capstan.prompts.variables import bind
from capstan.services import Services
from capstan.store.schema import PromptLabel, PromptVersion

router = APIRouter(tags=["prompts"])
Svc = Annotated[Services, Depends(services_of)]
Reader = Annotated[Principal, Depends(authorize(Permission.PROMPTS_READ))]
Writer = Annotated[Principal, Depends(authorize(Permission.PROMPTS_WRITE))]
# Label moves check their own rule (`production` may need an approver, not a writer).
Mover = Annotated[Principal, Depends(authorize(Permission.PROMPTS_READ))]


class VersionOut(BaseModel):
    name: str
    version: int
    labels: list[str] = Field(description="the labels pointing at this version")
    model: str | None
    params: dict[str, Any]
    variables: dict[str, Any]
    messages: list[dict[str, str]] | None
    text: str | None
    message: str | None
    author: str
    content_hash: str
    created_at: datetime


class PushedOut(VersionOut):
    created: bool = Field(description="false when the content was unchanged")


class PromptOut(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    project_id: uuid.UUID | None
    latest_version: int
    labels: dict[str, int]
    created_at: datetime


class HistoryOut(BaseModel):
    name: str
    labels: dict[str, int]
    versions: list[VersionOut]
    label_moves: list[dict[str, Any]]


class LabelIn(BaseModel):
    version: int = Field(ge=1)


class LabelOut(BaseModel):
    name: str
    label: str
    version: int
    updated_by: str
    updated_at: datetime


class RenderIn(BaseModel):
    label: str | None = None
    version: int | None = Field(default=None, ge=1)
    variables: dict[str, Any] = Field(default_factory=dict)


class RenderOut(BaseModel):
    name: str
    version: int
    model: str | None
    params: dict[str, Any]
    messages: list[dict[str, str]] | None = None
    text: str | None = None


class DiffOut(BaseModel):
    name: str
    from_version: int
    to_version: int
    diff: str


def version_view(name: str, row: PromptVersion, labels: dict[str, int]) -> VersionOut:
    return VersionOut(
        name=name,
        version=row.version,
        labels=sorted(label for label, number in labels.items() if number == row.version),
        model=row.model,
        params=row.params or {},
        variables=row.variables or {},
        messages=row.messages,
        text=row.text,
        message=row.message,
        author=row.author,
        content_hash=row.content_hash,
        created_at=row.created_at,
    )


@router.post("/prompts", response_model=PushedOut, status_code=status.HTTP_201_CREATED)
def push_prompt(
    response: Response,
    services: Svc,
    principal: Writer,
    body: Annotated[dict[str, Any], Body(description="the prompt's fields, and `message`")],
) -> PushedOut:
    """A new version when the content changed (201); the current one when not (200)."""
    fields = dict(body)
    message = fields.pop("message", None)
    if message is not None and not isinstance(message, str):
        raise InvalidInput("message is a text", field="message")
    pushed = services.prompts.push(principal, parse_document(fields), message)
    if not pushed.created:
        response.status_code = status.HTTP_200_OK
    view = version_view(pushed.prompt.name, pushed.version, {})
    return PushedOut(**view.model_dump(), created=pushed.created)


@router.get("/prompts", response_model=list[PromptOut])
def list_prompts(services: Svc, principal: Reader) -> list[PromptOut]:
    return [
        PromptOut(
            id=view.prompt.id,
            name=view.prompt.name,
            description=view.prompt.description,
            project_id=view.prompt.project_id,
            latest_version=view.latest,
            labels=view.labels,
            created_at=view.prompt.created_at,
        )
        for view in services.prompts.list(principal)
    ]


@router.get(
    "/prompts/{name}",
    response_model=VersionOut,
    responses={304: {"description": "unchanged since the ETag sent in If-None-Match"}},
)
def get_prompt(
    name: str,
    request: Request,
    services: Svc,
    principal: Reader,
    label: Annotated[str | None, Query(description="a label, or `latest`")] = None,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """One version: by `version`, by `label`, or the newest. Its ETag changes when the
    answer would, so a client revalidates with `If-None-Match` for the price of a 304."""
    if label is not None and version is not None:
        raise InvalidInput("ask for a label or a version, not both", field="version")
    row, labels = services.prompts.version(principal, name, label=label, number=version)
    body = orjson.dumps(version_view(name, row, labels).model_dump(mode="json"))
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"etag": etag, "cache-control": "no-cache"}
    if etag in _etags(request.headers.get("if-none-match")):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


def _etags(header: str | None) -> set[str]:
    if not header:
        return set()
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}


@router.get("/prompts/{name}/history", response_model=HistoryOut)
def prompt_history(name: str, services: Svc, principal: Reader) -> HistoryOut:
    """Every version, newest first, and every label move."""
    history = services.prompts.history(principal, name)
    return HistoryOut(
        name=history.prompt.name,
        labels=history.labels,
        versions=[version_view(name, v, history.labels) for v in history.versions],
        label_moves=labels_of(history.moves),
    )


@router.get("/prompts/{name}/diff", response_model=DiffOut)
def diff_prompt(
    name: str,
    services: Svc,
    principal: Reader,
    from_version: Annotated[int, Query(alias="from", ge=1)],
    to_version: Annotated[int, Query(alias="to", ge=1)],
) -> DiffOut:
    diff = services.prompts.diff(principal, name, from_version, to_version)
    return DiffOut(name=name, from_version=from_version, to_version=to_version, diff=diff)


@router.put("/prompts/{name}/labels/{label}", response_model=LabelOut)
def move_label(name: str, label: str, body: LabelIn, services: Svc, principal: Mover) -> LabelOut:
    """Point a label at a version; every gateway serves it from its next request."""
    return _label_view(name, services.prompts.move_label(principal, name, label, body.version))


@router.post("/prompts/{name}/labels/{label}/rollback", response_model=LabelOut)
def rollback_label(name: str, label: str, services: Svc, principal: Mover) -> LabelOut:
    """Move the label back to where it pointed before its latest move."""
    return _label_view(name, services.prompts.rollback(principal, name, label))


def _label_view(name: str, row: PromptLabel) -> LabelOut:
    return LabelOut(
        name=name,
        label=row.name,
        version=row.version,
        updated_by=row.updated_by,
        updated_at=row.updated_at,
    )


@router.post("/prompts/{name}/render", response_model=RenderOut)
def render_prompt(name: str, body: RenderIn, services: Svc, principal: Reader) -> RenderOut:
    """What the gateway would put into a request for these variables (400 naming a variable
    that is missing or of the wrong type)."""
    from capstan.prompts.render import render

    if body.label is not None and body.version is not None:
        raise InvalidInput("ask for a label or a version, not both", field="version")
    label, number = (body.label, body.version) if body.version else parse_ref(body.label)
    row, _ = services.prompts.version(principal, name, label=label, number=number)
    served = served_version(name, row)
    rendered = render(served.template, bind(served.variables, body.variables))
    if isinstance(rendered, str):
        return RenderOut(
            name=name, version=row.version, model=row.model, params=row.params, text=rendered
        )
    return RenderOut(
        name=name, version=row.version, model=row.model, params=row.params, messages=rendered
    )
