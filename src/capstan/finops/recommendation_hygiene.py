"""FinOps hygiene recommendations: what sits idle or is about to run out, rather than what a
different model or a cache would save.

Split from `recommendations`, which keeps the shared types (`Recommendation`, `Thresholds`,
`Deployed`) and the kinds that price traffic; this module builds on it, never the reverse.
Three kinds, each from a small input that `recommendation_queries` gathers:

- `unused_key`, `unused_deployment`: live keys and configured deployments that served no call.
- `budget_runout`: budgets whose run-rate forecast (`reports.forecast`) passes their limit
  before their period ends, with the moment the straight line crosses it.

They name no saving, so `ranked` puts them after the recommendations that do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from capstan.finops.budget_rules import PeriodKind, period_end, period_start
from capstan.finops.recommendations import Deployed, Recommendation, Thresholds, usd
from capstan.finops.reports import forecast


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


# -- unused keys and deployments ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyActivity:
    id: str
    label: str  # "name (prefix…)"
    role: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    calls: int  # in the window
    last_call_at: datetime | None  # ever, where known


@dataclass(frozen=True, slots=True)
class DeploymentActivity:
    deployment: Deployed
    calls: int  # in the window
    last_call_at: datetime | None


def _idle(
    created_at: datetime, last_call_at: datetime | None, days: int, now: datetime
) -> dict[str, Any]:
    age = max(0, (now - created_at) // timedelta(days=1))
    return {
        "window_days": days,
        "created_at": created_at.isoformat(),
        "age_days": age,
        "last_call_at": _iso(last_call_at),
    }


def _since(evidence: Mapping[str, Any]) -> str:
    last = evidence["last_call_at"]
    called = "never called" if last is None else f"last call {last[:10]}"
    return f"{called}; {evidence['age_days']} days old"


def unused_keys(
    keys: Iterable[KeyActivity], *, days: int, now: datetime, thresholds: Thresholds = Thresholds()
) -> list[Recommendation]:
    """Live keys of a model-calling role, older than the window, that made no call in it."""
    start, found = now - timedelta(days=days), []
    for key in keys:
        live = key.revoked_at is None and (key.expires_at is None or key.expires_at > now)
        if not live or key.calls or key.role not in thresholds.idle_roles or key.created_at > start:
            continue
        evidence = _idle(key.created_at, key.last_call_at, days, now)
        evidence |= {"role": key.role, "expires_at": _iso(key.expires_at)}
        found.append(
            Recommendation(
                kind="unused_key",
                summary=f"key {key.label} made no model call in {days} days ({_since(evidence)})",
                scope={"key": key.label, "key_id": key.id},
                action=f"revoke key {key.id}",
                evidence=evidence,
            )
        )
    return found


def unused_deployments(
    deployments: Iterable[DeploymentActivity], *, days: int, now: datetime
) -> list[Recommendation]:
    """Deployments older than the window that served no call in it."""
    start, found = now - timedelta(days=days), []
    for activity in deployments:
        deployment = activity.deployment
        if activity.calls or deployment.created_at > start:
            continue
        evidence = _idle(deployment.created_at, activity.last_call_at, days, now)
        evidence |= {"model": deployment.model, "aliases": list(deployment.aliases)}
        action = f"remove deployment {deployment.name}"
        if deployment.aliases:
            action = f"take it out of alias {', '.join(deployment.aliases)}, then {action}"
        found.append(
            Recommendation(
                kind="unused_deployment",
                summary=f"deployment {deployment.name} ({deployment.model}) served no call in "
                f"{days} days ({_since(evidence)})",
                scope={"deployment": deployment.name},
                action=action,
                evidence=evidence,
            )
        )
    return found


# -- budgets --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BudgetSpend:
    id: str
    name: str
    scope_label: str
    period: PeriodKind
    limit_micros: int
    action: str
    spent_micros: int  # in the period holding `now`


def limit_reached_at(
    spent: int, limit: int, start: datetime, now: datetime, end: datetime
) -> datetime | None:
    """When spending at the rate of [start, now) reaches `limit`: `now` if it already has,
    start + elapsed x limit / spent otherwise (whole microseconds, rounded down); None if
    that is not before `end`, or nothing was spent."""
    if spent >= limit:
        return now
    elapsed = (now - start) // timedelta(microseconds=1)
    if spent <= 0 or elapsed * limit // spent >= (end - start) // timedelta(microseconds=1):
        return None
    return start + timedelta(microseconds=elapsed * limit // spent)


def budget_runouts(budgets: Iterable[BudgetSpend], *, now: datetime) -> list[Recommendation]:
    """Budgets whose run-rate forecast passes their limit before their period ends."""
    found = []
    for budget in budgets:
        start = period_start(budget.period, now)
        end = period_end(budget.period, start)
        if end is None:
            continue  # a total budget has no end to run out before
        projected = forecast(budget.spent_micros, start, end, now)
        reached = budget.spent_micros >= budget.limit_micros
        hits = limit_reached_at(budget.spent_micros, budget.limit_micros, start, now, end)
        if hits is None or not (reached or projected > budget.limit_micros):
            continue
        when = "has reached" if reached else f"will reach, around {hits:%Y-%m-%d %H:%M} UTC,"
        found.append(
            Recommendation(
                kind="budget_runout",
                summary=f"budget {budget.name} ({budget.scope_label}) {when} its {budget.period} "
                f"limit of {usd(budget.limit_micros)} before the period ends on {end:%Y-%m-%d}: "
                f"{usd(budget.spent_micros)} spent, {usd(projected)} forecast",
                scope={"budget": budget.name, "budget_id": budget.id},
                action=f"raise the limit or cut spend; once reached, the budget's action "
                f"({budget.action}) holds until {end:%Y-%m-%d %H:%M} UTC",
                evidence={
                    "period": budget.period,
                    "period_start": start.isoformat(),
                    "period_end": end.isoformat(),
                    "limit_micros": budget.limit_micros,
                    "spent_micros": budget.spent_micros,
                    "forecast_micros": projected,
                    "limit_reached_at": hits.isoformat(),
                    "already_reached": reached,
                },
            )
        )
    return found
