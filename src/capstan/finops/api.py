"""`/api/v1/budgets`, `/api/v1/prices` and `/api/v1/pauses`.

Budgets are listed with what the gateway's counters hold now (spent and reserved in the current
period), read from the same counter store the data plane reserves on, so what an operator sees
is what admission will decide on. Reading needs `spend:read` (admins and analysts); changing
needs `budgets:write` or `prices:write` (admins), so whoever spends cannot raise their limit.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, status
from pydantic import BaseModel, Field

from capstan.api.auth import authorize, services_of
from capstan.clock import as_utc, utcnow
from capstan.finops.budget_rules import counter_key, period_end, period_start
from capstan.finops.budgets import BudgetRequest
from capstan.finops.counters import CounterStoreUnavailable, Level
from capstan.finops.money import format_usd
from capstan.finops.price_overrides import PriceRequest, record_of
from capstan.finops.prices import Price
from capstan.finops.recompute import recompute_costs
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.services import Services
from capstan.store.schema import Budget, Pause

router = APIRouter(tags=["finops"])
Svc = Annotated[Services, Depends(services_of)]
SpendReader = Annotated[Principal, Depends(authorize(Permission.SPEND_READ))]
BudgetWriter = Annotated[Principal, Depends(authorize(Permission.BUDGETS_WRITE))]
PriceWriter = Annotated[Principal, Depends(authorize(Permission.PRICES_WRITE))]


class BudgetIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scope: str = Field(
        description="org, department:NAME, team:NAME, project:NAME, key:ID, user:ID|EMAIL "
        "or tag:KEY=VALUE",
        examples=["team:search"],
    )
    period: str = Field(description="daily, weekly, monthly or total", examples=["monthly"])
    limit_usd: str = Field(description="US dollars, a decimal string", examples=["12.50"])
    action: str = Field(default="block", description="block, alert-only or downgrade")
    downgrade_to: str | None = Field(default=None, description="the cheaper alias (downgrade)")
    thresholds: list[int] | None = Field(default=None, description="percentages; 50, 80, 100")
    pause_at: int | None = Field(
        default=None,
        description="pause the budget's scope (a key, project, team or department) when "
        "its spend reaches this percentage of the limit; added to the thresholds",
        examples=[100],
    )


class BudgetOut(BaseModel):
    id: uuid.UUID
    name: str
    scope_kind: str
    scope_id: uuid.UUID | None
    tag: str | None
    period: str
    limit_usd: str
    action: str
    downgrade_to: str | None
    thresholds: list[int]
    pause_at: int | None
    enabled: bool
    created_at: datetime
    # The current period as the gateway's counters see it (null when they cannot be read).
    period_start: datetime
    period_end: datetime | None
    spent_usd: str | None = None
    reserved_usd: str | None = None


class PriceIn(BaseModel):
    target_kind: str = Field(description="model or deployment", examples=["model"])
    target: str = Field(min_length=1, max_length=200, examples=["gpt-4o-mini"])
    prices: dict[str, str] = Field(
        description="USD per million tokens: input, output, cached_input, cache_write, "
        "reasoning; USD per unit: per_image, per_audio_second",
        examples=[{"input": "0.12", "output": "0.48"}],
    )
    effective_from: datetime | None = Field(default=None, description="now when omitted")
    note: str | None = Field(default=None, max_length=500)


class PriceOut(BaseModel):
    target_kind: str
    target: str
    source: str
    effective_from: datetime
    prices: dict[str, str | None]


def _budget_view(row: Budget, level: Level | None, at: datetime) -> BudgetOut:
    start = period_start(row.period, at)  # type: ignore[arg-type]
    return BudgetOut(
        id=row.id,
        name=row.name,
        scope_kind=row.scope_kind,
        scope_id=row.scope_id,
        tag=f"{row.tag_key}={row.tag_value}" if row.tag_key is not None else None,
        period=row.period,
        limit_usd=format_usd(row.limit_micros),
        action=row.action,
        downgrade_to=row.downgrade_to,
        thresholds=list(row.thresholds),
        pause_at=row.pause_at_percent,
        enabled=row.enabled,
        created_at=row.created_at,
        period_start=start,
        period_end=period_end(row.period, start),  # type: ignore[arg-type]
        spent_usd=format_usd(level.spent) if level is not None else None,
        reserved_usd=format_usd(level.reserved) if level is not None else None,
    )


async def _levels(request: Request) -> dict[Any, Level]:
    """Counter levels by budget id, as the gateway running in this process holds them (its
    routing snapshot has the budgets; a budget it has not loaded yet shows no level)."""
    gateway = getattr(request.app.state, "gateway", None)
    if gateway is None or gateway.table is None:
        return {}
    table = gateway.table
    at = utcnow()
    keys = {rule.id: counter_key(rule, at)[0] for rule in table.budgets.rules}
    try:
        levels = await gateway.counters.levels(list(keys.values()))
    except CounterStoreUnavailable:
        return {}
    return {budget_id: levels[key] for budget_id, key in keys.items() if key in levels}


@router.post("/budgets", status_code=status.HTTP_201_CREATED, response_model=BudgetOut)
def create_budget(body: BudgetIn, services: Svc, principal: BudgetWriter) -> BudgetOut:
    row = services.budgets.create(principal, BudgetRequest(**body.model_dump()))
    return _budget_view(row, Level(0, 0), utcnow())


@router.get("/budgets", response_model=list[BudgetOut])
async def list_budgets(request: Request, services: Svc, principal: SpendReader) -> list[BudgetOut]:
    rows = services.budgets.list(principal)
    levels = await _levels(request)
    at = utcnow()
    return [_budget_view(row, levels.get(row.id), at) for row in rows]


@router.get("/budgets/{ref}", response_model=BudgetOut)
async def get_budget(
    ref: str, request: Request, services: Svc, principal: SpendReader
) -> BudgetOut:
    row = services.budgets.get(principal, ref)
    levels = await _levels(request)
    return _budget_view(row, levels.get(row.id), utcnow())


@router.delete("/budgets/{ref}", status_code=status.HTTP_204_NO_CONTENT)
def delete_budget(ref: str, services: Svc, principal: BudgetWriter) -> None:
    services.budgets.delete(principal, ref)


def _price_view(kind: str, target: str, price: Price) -> PriceOut:
    rates: dict[str, int | None] = {
        "input": price.input,
        "output": price.output,
        "cached_input": price.cached_input,
        "cache_write": price.cache_write,
        "reasoning": price.reasoning,
        "per_image": price.per_image,
        "per_audio_second": price.per_audio_second,
    }
    return PriceOut(
        target_kind=kind,
        target=target,
        source=price.source,
        effective_from=price.effective_from,
        prices={k: None if v is None else format_usd(v) for k, v in rates.items()},
    )


@router.get("/prices", response_model=list[PriceOut])
def list_prices(
    services: Svc, principal: SpendReader, at: datetime | None = None
) -> list[PriceOut]:
    """The price of every model and deployment in force at `at` (now by default), in USD per
    million tokens: the catalog's list prices under the organization's overrides."""
    moment = as_utc(at) if at is not None else utcnow()
    book = services.prices.book(principal)
    return [_price_view(kind, target, price) for kind, target, price in book.prices_at(moment)]


@router.post("/prices", status_code=status.HTTP_201_CREATED, response_model=PriceOut)
def set_price(body: PriceIn, services: Svc, principal: PriceWriter) -> PriceOut:
    record = record_of(services.prices.set(principal, PriceRequest(**body.model_dump())))
    return _price_view(record.target_kind, record.target, record.price)


class PauseIn(BaseModel):
    scope: str = Field(
        description="key:ID, project:NAME, team:NAME or department:NAME", examples=["team:search"]
    )
    reason: str = Field(min_length=1, max_length=500, description="Told to every refused call.")


class ResumeIn(BaseModel):
    scope: str


class PauseOut(BaseModel):
    id: uuid.UUID
    scope_kind: str
    scope_id: uuid.UUID
    scope_label: str
    reason: str
    paused_by: str
    paused_at: datetime
    resumed_at: datetime | None
    resumed_by: str | None


def _pause_view(row: Pause) -> PauseOut:
    return PauseOut(
        id=row.id,
        scope_kind=row.scope_kind,
        scope_id=row.scope_id,
        scope_label=row.scope_label,
        reason=row.reason,
        paused_by=row.paused_by,
        paused_at=row.created_at,
        resumed_at=row.resumed_at,
        resumed_by=row.resumed_by,
    )


@router.post("/pauses", status_code=status.HTTP_201_CREATED, response_model=PauseOut)
def pause(body: PauseIn, services: Svc, principal: BudgetWriter) -> PauseOut:
    """Stop a scope's model calls until it is resumed; every gateway refuses within a second."""
    return _pause_view(services.pauses.pause(principal, body.scope, body.reason))


@router.post("/pauses/resume", response_model=PauseOut)
def resume(body: ResumeIn, services: Svc, principal: BudgetWriter) -> PauseOut:
    return _pause_view(services.pauses.resume(principal, body.scope))


@router.get("/pauses", response_model=list[PauseOut])
def list_pauses(
    services: Svc, principal: SpendReader, include_resumed: bool = False
) -> list[PauseOut]:
    rows = services.pauses.list(principal, include_resumed=include_resumed)
    return [_pause_view(row) for row in rows]


class RecomputeIn(BaseModel):
    since: datetime = Field(description="Re-price the calls that arrived from this moment on.")


class RecomputeOut(BaseModel):
    since: datetime
    examined: int
    changed: int
    delta_usd: str
    delta_micros: int


@router.post("/prices/recompute", response_model=RecomputeOut)
def recompute_prices(body: RecomputeIn, services: Svc, principal: PriceWriter) -> RecomputeOut:
    """Re-price past calls at the prices now on record for their time (after a price entered
    late); one transaction with its audit entry."""
    done = recompute_costs(
        services.store, services.audit, services.prices.book(principal), principal, body.since
    )
    return RecomputeOut(
        since=done.since,
        examined=done.examined,
        changed=done.changed,
        delta_usd=format_usd(done.delta_micros),
        delta_micros=done.delta_micros,
    )
