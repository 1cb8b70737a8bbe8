"""`/api/v1/requests`: the request log, read back for whoever may read the organization.

Reading needs `org:read`, which admins, analysts, developers and approvers hold and call-only
`service` keys do not: an event says which model a project called, how it went and what it
cost in tokens, the same standing as the projects and deployments that key can already list,
and a developer debugging a failed call must be able to find it. What a key sees is bounded by
its scope (a project key sees its project's requests only). The logged prompt and response are
content, not usage, so `payload` comes back only with `payloads:read` (analysts); for everyone
else it is null, whether or not one was logged.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict

from capstan.api.auth import authorize, services_of
from capstan.api.pagination import DEFAULT_LIMIT, MAX_LIMIT
from capstan.errors import NotFound
from capstan.events.queries import (
    EventCursor,
    EventFilters,
    Outcome,
    get_event,
    list_events,
    parse_tag,
)
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission, role_can
from capstan.services import Services
from capstan.store.schema import RequestEvent

router = APIRouter(tags=["requests"])
Svc = Annotated[Services, Depends(services_of)]
Reader = Annotated[Principal, Depends(authorize(Permission.ORG_READ))]
Name = Annotated[str | None, Query(min_length=1, max_length=200)]
Id = Annotated[uuid.UUID | None, Query()]


class RequestEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    created_at: datetime
    org_id: uuid.UUID
    department_id: uuid.UUID | None
    team_id: uuid.UUID | None
    project_id: uuid.UUID | None
    key_id: uuid.UUID | None
    user_id: uuid.UUID | None
    route: str
    model: str
    deployment: str | None
    provider: str | None
    upstream_model: str | None
    stream: bool
    attempts: int
    status: int
    error_type: str | None
    error_message: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cached_tokens: int | None
    cache_write_tokens: int | None
    reasoning_tokens: int | None
    # Micro-dollars; null when nothing priced the call.
    cost_micros: int | None
    cost_input_micros: int | None
    cost_cache_read_micros: int | None
    cost_cache_write_micros: int | None
    cost_output_micros: int | None
    cost_reasoning_micros: int | None
    cost_estimated: bool
    latency_ms: float
    ttft_ms: float | None
    tags: dict[str, Any]
    prompt_name: str | None = None
    prompt_version: int | None = None
    experiment_id: uuid.UUID | None = None
    payload: dict[str, Any] | None


class RequestEventPage(BaseModel):
    items: list[RequestEventOut]
    next_cursor: str | None


def _view(event: RequestEvent, who: Principal) -> RequestEventOut:
    out = RequestEventOut.model_validate(event)
    if not role_can(who.role, Permission.PAYLOADS_READ):
        out.payload = None
    out.tags = out.tags or {}  # a row written without tags reads back as SQL NULL
    return out


@router.get("/requests", response_model=RequestEventPage)
def list_requests(
    svc: Svc,
    who: Reader,
    model: Name = None,
    deployment: Name = None,
    provider: Name = None,
    project_id: Id = None,
    team_id: Id = None,
    department_id: Id = None,
    key_id: Id = None,
    user_id: Id = None,
    status: Annotated[int | None, Query(ge=100, le=599)] = None,
    outcome: Outcome | None = None,
    error_type: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    stream: bool | None = None,
    tag: Annotated[list[str] | None, Query(max_length=20)] = None,
    prompt: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    prompt_version: Annotated[int | None, Query(ge=1)] = None,
    experiment_id: Id = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
) -> Any:
    """Newest first. `since` is inclusive, `until` exclusive; each `tag=k=v` must match."""
    filters = EventFilters(
        model=model,
        deployment=deployment,
        provider=provider,
        project_id=project_id,
        team_id=team_id,
        department_id=department_id,
        key_id=key_id,
        user_id=user_id,
        status=status,
        outcome=outcome,
        error_type=error_type,
        since=since,
        until=until,
        stream=stream,
        tags=tuple(parse_tag(t) for t in tag or ()),
        prompt_name=prompt,
        prompt_version=prompt_version,
        experiment_id=experiment_id,
    )
    after = EventCursor.decode(cursor) if cursor is not None else None
    with svc.store.read() as session:
        # One row more than asked tells whether another page exists, so the last page says
        # so itself instead of sending the client for an empty one.
        rows = list_events(session, who.scope, filters, limit + 1, after)
        items = [_view(row, who) for row in rows[:limit]]
    more = len(rows) > limit
    next_cursor = EventCursor.after(rows[limit - 1]).encode() if more else None
    return RequestEventPage(items=items, next_cursor=next_cursor)


@router.get("/requests/{request_id}", response_model=RequestEventOut)
def get_request(request_id: uuid.UUID, svc: Svc, who: Reader) -> Any:
    """One request; 404 alike for an id that does not exist and one outside the key's scope."""
    with svc.store.read() as session:
        event = get_event(session, who.scope, request_id)
        if event is None:
            raise NotFound(f"no request {request_id}", field="request_id")
        return _view(event, who)
