"""`/api/v1/rate-limits`: requests, tokens and USD per minute or day, per key, project, team,
department or model.

Listed with what the current window holds on the gateway's counters, the ones admission
decides on. Reading needs `spend:read`; changing needs `budgets:write` (admins), so whoever is
limited cannot lift their own limit.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from pydantic import BaseModel, Field

from capstan.api.auth import authorize, services_of
from capstan.finops.counters import CounterStoreUnavailable, Level
from capstan.finops.money import format_usd
from capstan.finops.ratelimit_rules import format_reset
from capstan.finops.ratelimits import RateLimitRequest, rule_of
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.services import Services
from capstan.store.schema import RateLimit

router = APIRouter(tags=["finops"])
Svc = Annotated[Services, Depends(services_of)]
SpendReader = Annotated[Principal, Depends(authorize(Permission.SPEND_READ))]
LimitWriter = Annotated[Principal, Depends(authorize(Permission.BUDGETS_WRITE))]


class RateLimitIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scope: str = Field(
        description="key:ID, project:NAME, team:NAME, department:NAME or model:NAME",
        examples=["project:checkout"],
    )
    period: str = Field(default="minute", description="minute or day")
    requests: int | None = Field(default=None, gt=0, description="requests per period")
    tokens: int | None = Field(default=None, gt=0, description="tokens (in + out) per period")
    limit_usd: str | None = Field(default=None, description="US dollars per period, a decimal")
    model: str | None = Field(
        default=None,
        description="count only the scope's calls to this model (an alias or a model name)",
    )


class Usage(BaseModel):
    """One capped metric in the current window."""

    limit: str
    used: str
    reserved: str


class RateLimitOut(BaseModel):
    id: uuid.UUID
    name: str
    scope_kind: str
    scope_id: uuid.UUID | None
    scope: str
    model: str | None
    period: str
    requests: int | None
    tokens: int | None
    limit_usd: str | None
    enabled: bool
    created_at: datetime
    # The current window as the gateway's counters see it (empty when they cannot be read).
    window: dict[str, Usage] = Field(default_factory=dict)
    resets_in: str | None = None


def _view(row: RateLimit, window: dict[str, Usage], resets_in: str | None) -> RateLimitOut:
    return RateLimitOut(
        id=row.id,
        name=row.name,
        scope_kind=row.scope_kind,
        scope_id=row.scope_id,
        scope=row.scope_label,
        model=row.model,
        period=row.period,
        requests=row.requests,
        tokens=row.tokens,
        limit_usd=format_usd(row.usd_micros) if row.usd_micros is not None else None,
        enabled=row.enabled,
        created_at=row.created_at,
        window=window,
        resets_in=resets_in,
    )


async def _windows(
    request: Request, rows: list[RateLimit]
) -> dict[uuid.UUID, tuple[dict[str, Usage], str]]:
    """Each rate limit's current window, from the counters of the gateway in this process."""
    gateway = getattr(request.app.state, "gateway", None)
    if gateway is None or not rows:
        return {}
    now = time.time()
    caps = [cap for row in rows for cap in rule_of(row).caps()]
    windows = [cap.window(now) for cap in caps]
    keys = [key for key, _, _ in windows]
    try:
        levels: dict[str, Level] = await gateway.counters.levels(keys)
    except CounterStoreUnavailable:
        return {}
    found: dict[uuid.UUID, tuple[dict[str, Usage], str]] = {}
    for cap, (key, _, end) in zip(caps, windows, strict=True):
        level = levels.get(key, Level(0, 0))
        shown = format_usd if cap.metric == "usd" else str
        usage, _ = found.setdefault(cap.rule.id, ({}, format_reset(end - now)))
        usage[cap.metric] = Usage(
            limit=shown(cap.limit), used=shown(level.spent), reserved=shown(level.reserved)
        )
    return found


@router.post("/rate-limits", status_code=status.HTTP_201_CREATED, response_model=RateLimitOut)
def create_rate_limit(body: RateLimitIn, services: Svc, principal: LimitWriter) -> RateLimitOut:
    row = services.rate_limits.create(principal, RateLimitRequest(**body.model_dump()))
    return _view(row, {}, None)


@router.get("/rate-limits", response_model=list[RateLimitOut])
async def list_rate_limits(
    request: Request, services: Svc, principal: SpendReader
) -> list[RateLimitOut]:
    rows = services.rate_limits.list(principal)
    windows = await _windows(request, rows)
    return [_view(row, *windows.get(row.id, ({}, None))) for row in rows]


@router.get("/rate-limits/{ref}", response_model=RateLimitOut)
async def get_rate_limit(
    ref: str, request: Request, services: Svc, principal: SpendReader
) -> RateLimitOut:
    row = services.rate_limits.get(principal, ref)
    windows = await _windows(request, [row])
    return _view(row, *windows.get(row.id, ({}, None)))


@router.delete("/rate-limits/{ref}", status_code=status.HTTP_204_NO_CONTENT)
def delete_rate_limit(ref: str, services: Svc, principal: LimitWriter) -> None:
    services.rate_limits.delete(principal, ref)
