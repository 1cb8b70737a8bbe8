"""What the recommendations are computed from, gathered with one aggregate statement each.

Request events are never loaded row by row: traffic is summed by (model asked, project,
deployment, upstream model) with GROUP BY, repeated prompts by fingerprint in a subquery and
then by the same four columns, and keys and deployments get a count per name in the window.
Every statement is plain SQLAlchemy Core that runs the same on SQLite and PostgreSQL (whose
sums of big integers come back as Decimals, hence the `int()`s). Events are bounded by the
caller's scope as spend reports are; keys and budgets by the parts of the organization the
scope covers; deployments are organization-wide, so only an organization-wide key is told
which ones went unused.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from capstan.finops.budget_rules import counter_key
from capstan.finops.budgets import load_rules, stored_scope
from capstan.finops.prices import PriceBook
from capstan.finops.rebuild import spent_so_far
from capstan.finops.recommendation_hygiene import (
    BudgetSpend,
    DeploymentActivity,
    KeyActivity,
    budget_runouts,
    unused_deployments,
    unused_keys,
)
from capstan.finops.recommendations import (
    Deployed,
    Kind,
    PromptRepeats,
    Recommendation,
    Route,
    Thresholds,
    TokenMix,
    cheaper_models,
    prompt_caching,
    ranked,
)
from capstan.gateway.catalog.catalog import Catalog
from capstan.identity.scope import Level, ScopePath, visible_to
from capstan.store.engine import Store
from capstan.store.schema import (
    ApiKey,
    Budget,
    GatewayAlias,
    GatewayDeployment,
    Project,
    RequestEvent,
)

_E = RequestEvent
_ROUTE = (_E.model, _E.project_id, _E.deployment, _E.upstream_model)
_COUNT_TOKENS = "messages.count_tokens"  # a token count, not a model call


def _events(scope: ScopePath, start: datetime, end: datetime) -> list[ColumnElement[bool]]:
    """Successful model calls in [start, end) that `scope` may see."""
    columns = {
        "org_id": _E.org_id,
        "department_id": _E.department_id,
        "team_id": _E.team_id,
        "project_id": _E.project_id,
    }
    return [
        visible_to(scope, columns),
        _E.created_at >= start,
        _E.created_at < end,
        _E.status < 400,
        _E.route != _COUNT_TOKENS,
    ]


def _total(value: Any) -> ColumnElement[Any]:
    return func.coalesce(func.sum(value), 0)


def _routes(session: Session, rows: list[Any]) -> list[Route]:
    """The route of each grouped row, projects named (one query for the ids that appear)."""
    ids = {row.project_id for row in rows if row.project_id is not None}
    names: dict[Any, str] = {}
    if ids:
        statement = select(Project.id, Project.name).where(Project.id.in_(ids))
        names = {project_id: name for project_id, name in session.execute(statement)}
    return [
        Route(
            asked=row.model,
            project_id=None if row.project_id is None else str(row.project_id),
            project=names.get(
                row.project_id, None if row.project_id is None else str(row.project_id)
            ),
            deployment=row.deployment,
            upstream_model=row.upstream_model,
        )
        for row in rows
    ]


def traffic_mix(
    store: Store, scope: ScopePath, start: datetime, end: datetime
) -> list[tuple[Route, TokenMix]]:
    """Calls, tokens and cost per route; token sums over the priced calls only."""
    priced = _E.cost_micros.is_not(None)

    def priced_total(column: Any) -> ColumnElement[Any]:
        return _total(case((priced, column), else_=None))

    statement = (
        select(
            *_ROUTE,
            func.count(),
            func.count(_E.cost_micros),
            priced_total(_E.prompt_tokens),
            priced_total(_E.cached_tokens),
            priced_total(_E.cache_write_tokens),
            priced_total(_E.completion_tokens),
            priced_total(_E.reasoning_tokens),
            _total(_E.cost_micros),
            func.coalesce(func.max(_E.prompt_tokens), 0),
            func.coalesce(func.max(_E.completion_tokens), 0),
        )
        .where(*_events(scope, start, end))
        .group_by(*_ROUTE)
    )
    with store.read() as session:
        rows = list(session.execute(statement))
        routes = _routes(session, rows)
    return [(route, TokenMix(*map(int, row[4:]))) for route, row in zip(routes, rows, strict=True)]


def prompt_repeats(
    store: Store, scope: ScopePath, start: datetime, end: datetime
) -> list[tuple[Route, PromptRepeats]]:
    """Per route: fingerprinted calls, and how many of them repeat a fingerprint, with the
    shortest prompt of each repeated fingerprint as the prefix its calls share."""
    fingerprint = _E.prompt_fingerprint
    inner = (
        select(
            *_ROUTE,
            func.count().label("n"),
            func.coalesce(func.min(_E.prompt_tokens), 0).label("shortest"),
            _total(_E.prompt_tokens).label("prompt"),
            _total(_E.cached_tokens).label("cached"),
        )
        .where(*_events(scope, start, end), fingerprint.is_not(None))
        .group_by(*_ROUTE, fingerprint)
        .subquery()
    )
    c = inner.c
    repeated = c.n > 1
    statement = select(
        c.model,
        c.project_id,
        c.deployment,
        c.upstream_model,
        _total(c.n),
        _total(case((repeated, c.n), else_=0)),
        _total(case((repeated, 1), else_=0)),
        _total(case((repeated, (c.n - 1) * c.shortest), else_=0)),
        _total(case((repeated, c.shortest), else_=0)),
        _total(c.prompt),
        _total(c.cached),
    ).group_by(c.model, c.project_id, c.deployment, c.upstream_model)
    with store.read() as session:
        rows = list(session.execute(statement))
        routes = _routes(session, rows)
    pairs = zip(routes, rows, strict=True)
    return [(route, PromptRepeats(*map(int, row[4:]))) for route, row in pairs]


def _counts(
    session: Session, column: Any, names: Collection[Any], where: Iterable[ColumnElement[bool]]
) -> dict[Any, int]:
    if not names:
        return {}
    statement = select(column, func.count()).where(column.in_(names), *where).group_by(column)
    return {name: int(count) for name, count in session.execute(statement)}


def _last_calls(
    session: Session,
    column: Any,
    idle: Mapping[Any, datetime],
    org_id: uuid.UUID,
    before: datetime,
) -> dict[Any, datetime]:
    """The last call before `before` of each of `idle` (name -> when it was created): a call
    before the oldest of them was created cannot be one of theirs, which bounds the scan."""
    if not idle:
        return {}
    statement = (
        select(column, func.max(_E.created_at))
        .where(
            column.in_(list(idle)),
            _E.org_id == org_id,
            _E.created_at >= min(idle.values()),
            _E.created_at < before,
        )
        .group_by(column)
    )
    return {name: last for name, last in session.execute(statement)}


def key_activity(
    store: Store, scope: ScopePath, start: datetime, end: datetime
) -> list[KeyActivity]:
    """The keys `scope` covers that are not revoked, with their calls in the window and, for
    those without any, their last call before it."""
    columns = {
        "org_id": ApiKey.org_id,
        "department_id": ApiKey.department_id,
        "team_id": ApiKey.team_id,
        "project_id": ApiKey.project_id,
    }
    in_window = (_E.org_id == scope.org_id, _E.created_at >= start, _E.created_at < end)
    with store.read() as session:
        keys = session.scalars(
            select(ApiKey).where(visible_to(scope, columns), ApiKey.revoked_at.is_(None))
        ).all()
        calls = _counts(session, _E.key_id, [key.id for key in keys], in_window)
        idle = {key.id: key.created_at for key in keys if key.id not in calls}
        last = _last_calls(session, _E.key_id, idle, scope.org_id, start)
    return [
        KeyActivity(
            id=str(key.id),
            label=f"{key.name} ({key.prefix}…)",
            role=key.role,
            created_at=key.created_at,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
            calls=calls.get(key.id, 0),
            last_call_at=last.get(key.id),
        )
        for key in keys
    ]


def gateway_setup(store: Store, org_id: uuid.UUID) -> tuple[list[Deployed], list[str]]:
    """The organization's deployments (with the aliases that route or fall back to each) and
    its alias names."""
    with store.read() as session:
        deployments = session.execute(
            select(GatewayDeployment.name, GatewayDeployment.model, GatewayDeployment.created_at)
            .where(GatewayDeployment.org_id == org_id)
            .order_by(GatewayDeployment.name)
        ).all()
        aliases = session.execute(
            select(GatewayAlias.name, GatewayAlias.targets, GatewayAlias.fallbacks).where(
                GatewayAlias.org_id == org_id
            )
        ).all()
    users: dict[str, list[str]] = {}
    for name, targets, fallbacks in sorted(aliases):
        used = {t.get("deployment") for t in targets or []} | set(fallbacks or [])
        for deployment in used:
            users.setdefault(str(deployment), []).append(name)
    found = [Deployed(n, m, created, tuple(users.get(n, ()))) for n, m, created in deployments]
    return found, [name for name, _, _ in aliases]


def deployment_activity(
    store: Store, org_id: uuid.UUID, deployments: list[Deployed], start: datetime, end: datetime
) -> list[DeploymentActivity]:
    """Each deployment's calls in the window and, for those without any, the last call before
    it."""
    names = [d.name for d in deployments]
    in_window = (_E.org_id == org_id, _E.created_at >= start, _E.created_at < end)
    with store.read() as session:
        calls = _counts(session, _E.deployment, names, in_window)
        idle = {d.name: d.created_at for d in deployments if d.name not in calls}
        last = _last_calls(session, _E.deployment, idle, org_id, start)
    return [DeploymentActivity(d, calls.get(d.name, 0), last.get(d.name)) for d in deployments]


def budget_spend(store: Store, scope: ScopePath, now: datetime) -> list[BudgetSpend]:
    """The enabled budgets lying in `scope`, with what each spent in its current period (the
    sums the gateway rebuilds its counters from)."""
    with store.read() as session:
        rules = load_rules(session, scope.org_id)
        if scope.level != Level.ORGANIZATION:
            rows = session.scalars(select(Budget).where(Budget.org_id == scope.org_id)).all()
            inside = {row.id for row in rows if scope.contains(stored_scope(session, row).path)}
            rules = [rule for rule in rules if rule.id in inside]
    spent = spent_so_far(store, rules, now)
    return [
        BudgetSpend(
            id=str(rule.id),
            name=rule.name,
            scope_label=rule.scope_label,
            period=rule.period,
            limit_micros=rule.limit,
            action=rule.action,
            spent_micros=spent[counter_key(rule, now)[0]][0],
        )
        for rule in rules
    ]


def recommend(
    store: Store,
    scope: ScopePath,
    *,
    book: PriceBook,
    catalog: Catalog,
    days: int,
    kinds: Collection[Kind],
    now: datetime,
    scores: Mapping[str, float] | None = None,
    thresholds: Thresholds = Thresholds(),
) -> list[Recommendation]:
    """Every recommendation of `kinds` for `scope` over the `days` before `now`, ranked."""
    start = now - timedelta(days=days)
    found: list[Recommendation] = []
    deployments, aliases = gateway_setup(store, scope.org_id)
    if "cheaper_model" in kinds:
        found += cheaper_models(
            traffic_mix(store, scope, start, now),
            catalog=catalog,
            book=book,
            deployments=deployments,
            aliases=aliases,
            days=days,
            now=now,
            scores=scores,
            thresholds=thresholds,
        )
    if "prompt_caching" in kinds:
        repeats = prompt_repeats(store, scope, start, now)
        found += prompt_caching(
            repeats,
            book=book,
            deployments=deployments,
            aliases=aliases,
            days=days,
            now=now,
            thresholds=thresholds,
        )
    if "unused_key" in kinds:
        keys = key_activity(store, scope, start, now)
        found += unused_keys(keys, days=days, now=now, thresholds=thresholds)
    if "unused_deployment" in kinds and scope.level == Level.ORGANIZATION:
        activity = deployment_activity(store, scope.org_id, deployments, start, now)
        found += unused_deployments(activity, days=days, now=now)
    if "budget_runout" in kinds:
        found += budget_runouts(budget_spend(store, scope, now), now=now)
    return ranked(found)
