"""Budget counters rebuilt from the request events: the store is the source of truth, and a
process that starts (or a Redis that lost its keys) must not forget what was already spent."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from capstan.finops.budget_rules import BudgetRule, counter_key, period_start
from capstan.store.engine import Store
from capstan.store.schema import RequestEvent

_COLUMNS: dict[str, Any] = {
    "org": RequestEvent.org_id,
    "department": RequestEvent.department_id,
    "team": RequestEvent.team_id,
    "project": RequestEvent.project_id,
    "key": RequestEvent.key_id,
    "user": RequestEvent.user_id,
}


def spent_so_far(
    store: Store, rules: Iterable[BudgetRule], at: datetime
) -> dict[str, tuple[int, float]]:
    """For each rule's current counter key: (micro-dollars spent in the period, the key's ttl).
    One aggregate query per rule, run in a worker thread by the caller."""
    found: dict[str, tuple[int, float]] = {}
    with store.read() as session:
        for rule in rules:
            key, ttl = counter_key(rule, at)
            statement = select(func.coalesce(func.sum(RequestEvent.cost_micros), 0)).where(
                RequestEvent.created_at >= period_start(rule.period, at)
            )
            if rule.scope_kind == "tag":
                assert rule.tag is not None
                tag_key, value = rule.tag
                statement = statement.where(RequestEvent.tags[tag_key].as_string() == value)
            else:
                statement = statement.where(_COLUMNS[rule.scope_kind] == rule.scope_id)
            found[key] = (int(session.scalar(statement) or 0), ttl)
    return found
