"""`/api/v1/recommendations`: where the organization could spend less, and budgets about to
run out, from the traffic of the last `days` days.

Reading needs `spend:read` (admins and analysts), and what a key is told is bounded by its
scope as spend reports are. The handler parses the query, gathers the aggregates
(`recommendation_queries`) and shapes the core's answer; nothing is decided here.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from capstan.api.auth import authorize, services_of
from capstan.clock import utcnow
from capstan.errors import InvalidInput
from capstan.finops.money import format_usd
from capstan.finops.recommendation_queries import recommend
from capstan.finops.recommendations import (
    DEFAULT_DAYS,
    KINDS,
    MAX_DAYS,
    Recommendation,
    parse_kinds,
)
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.services import Services

router = APIRouter(tags=["finops"])
Svc = Annotated[Services, Depends(services_of)]
SpendReader = Annotated[Principal, Depends(authorize(Permission.SPEND_READ))]


def recommendation_view(found: Recommendation) -> dict[str, Any]:
    """One recommendation as JSON: the saving in exact micro-dollars and in US dollars; the
    quality fields only where a model is compared."""
    saving = found.monthly_saving_micros
    view: dict[str, Any] = {
        "kind": found.kind,
        "summary": found.summary,
        "scope": dict(found.scope),
        "action": found.action,
        "monthly_saving_micros": saving,
        "monthly_saving_usd": None if saving is None else format_usd(saving),
    }
    if found.kind == "cheaper_model":
        view["quality_difference"] = found.quality_difference
        view["quality_note"] = found.quality_note
    view["evidence"] = dict(found.evidence)
    return view


@router.get("/recommendations")
def recommendations(
    svc: Svc,
    who: SpendReader,
    days: Annotated[
        int, Query(ge=1, le=MAX_DAYS, description="the lookback window, in days before now")
    ] = DEFAULT_DAYS,
    kind: Annotated[
        str | None,
        Query(max_length=200, description=f"one or more (comma-separated) of {', '.join(KINDS)}"),
    ] = None,
) -> dict[str, Any]:
    """Recommendations, the largest monthly saving first: cheaper models, prompt caching,
    unused keys and deployments, budgets that will run out before their period ends."""
    try:
        kinds = parse_kinds(kind)
    except ValueError as exc:
        raise InvalidInput(f"kind: {exc}", field="query.kind") from exc
    now = utcnow()
    found = recommend(
        svc.store,
        who.scope,
        book=svc.prices.book(who),
        catalog=svc.prices.catalog,
        days=days,
        kinds=kinds,
        now=now,
    )
    return {
        "window": {
            "days": days,
            "start": (now - timedelta(days=days)).isoformat(),
            "end": now.isoformat(),
        },
        "kinds": list(kinds),
        "recommendations": [recommendation_view(r) for r in found],
        "currency": "USD",
    }
