"""Which budgets a request touches, which period it falls in, and which thresholds it crossed:
plain functions on plain data, so the arithmetic that decides whether money may be spent is
tested without a server.

A budget's counter key names the budget and the start of its current period
(`budget:<id>:20261101`): a new period is a new key that starts at zero, so a period rolls over
at its boundary without a restart or a reset job, and the old key simply expires.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Literal, NamedTuple

from capstan.identity.scope import ScopePath

ScopeKind = Literal["org", "department", "team", "project", "key", "user", "tag"]
PeriodKind = Literal["daily", "weekly", "monthly", "total"]
Action = Literal["block", "alert-only", "downgrade"]
SCOPE_KINDS: tuple[ScopeKind, ...] = ("org", "department", "team", "project", "key", "user", "tag")
PERIODS: tuple[PeriodKind, ...] = ("daily", "weekly", "monthly", "total")
ACTIONS: tuple[Action, ...] = ("block", "alert-only", "downgrade")
DEFAULT_THRESHOLDS = (50, 80, 100)
MEMO_LIMIT = 100_000  # callers whose budgets an index remembers
# A counter outlives its period by this much, so a late settlement still finds it.
COUNTER_GRACE = timedelta(days=2)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TOTAL_TTL = timedelta(days=3650)


@dataclass(frozen=True, slots=True)
class BudgetRule:
    id: uuid.UUID
    name: str
    scope_kind: ScopeKind
    # The department, team, project, key or user id (the org's id for `org`); None for `tag`.
    scope_id: uuid.UUID | None
    tag: tuple[str, str] | None
    period: PeriodKind
    limit: int  # micro-dollars
    action: Action
    downgrade_to: str | None = None
    thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS
    # How the scope reads to a person ("team search", "tag env=prod"), for errors and alerts.
    scope_label: str = ""
    # The threshold (one of `thresholds`) at which the budget pauses its scope; None: never.
    pause_at: int | None = None

    @property
    def blocks(self) -> bool:
        return self.action == "block"

    @property
    def lowest_threshold(self) -> int:
        """The first percentage that alerts (thresholds are kept sorted); past any limit if
        there are none."""
        return self.thresholds[0] if self.thresholds else 10**9


def period_start(period: PeriodKind, at: datetime) -> datetime:
    """Where the period containing `at` began (UTC): midnight, Monday, the 1st, or never."""
    at = at.astimezone(UTC)
    midnight = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return midnight
    if period == "weekly":
        return midnight - timedelta(days=midnight.weekday())
    if period == "monthly":
        return midnight.replace(day=1)
    return _EPOCH


def period_end(period: PeriodKind, start: datetime) -> datetime | None:
    """The first instant after the period that began at `start`; None for `total`."""
    if period == "daily":
        return start + timedelta(days=1)
    if period == "weekly":
        return start + timedelta(weeks=1)
    if period == "monthly":
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        return start.replace(year=year, month=month)
    return None


def counter_key(rule: BudgetRule, at: datetime) -> tuple[str, float]:
    """The counter of `rule`'s period at `at`, and how long (seconds from `at`) it must live."""
    key, ttl, _ = counter_window(rule, at)
    return key, ttl


def counter_window(rule: BudgetRule, at: datetime) -> tuple[str, float, datetime | None]:
    """`counter_key`, and the moment the period ends (None: never), after which the key
    changes."""
    start = period_start(rule.period, at)
    end = period_end(rule.period, start)
    ttl = (end + COUNTER_GRACE - at) if end is not None else _TOTAL_TTL
    return f"budget:{rule.id.hex}:{start:%Y%m%d}", ttl.total_seconds(), end


def crossed(thresholds: Iterable[int], limit: int, before: int, after: int) -> list[int]:
    """The thresholds (percentages of `limit`) that spending from `before` to `after` crossed;
    compared in integers, so 80 % of 12.50 USD is crossed at exactly 10.00 USD."""
    return [t for t in thresholds if before * 100 < t * limit <= after * 100]


class Caller(NamedTuple):
    """What a request is attributed to, as budgets see it (a tuple: one is built per call)."""

    scope: ScopePath
    key_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    tags: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class BudgetIndex:
    """The enabled budgets of an organization, indexed by what they apply to, so a request
    finds its budgets with a handful of dictionary lookups."""

    by_target: Mapping[tuple[str, object], tuple[BudgetRule, ...]]
    rules: tuple[BudgetRule, ...] = ()
    # The budgets of a (scope, key, user), tags aside: a key's never change within an index.
    _memo: dict[object, tuple[BudgetRule, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def of(cls, rules: Iterable[BudgetRule]) -> BudgetIndex:
        grouped: dict[tuple[str, object], list[BudgetRule]] = {}
        kept = tuple(rules)
        for rule in kept:
            target: object = rule.tag if rule.scope_kind == "tag" else rule.scope_id
            grouped.setdefault((rule.scope_kind, target), []).append(rule)
        return cls({k: tuple(v) for k, v in grouped.items()}, kept)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def for_caller(self, caller: Caller) -> tuple[BudgetRule, ...]:
        """The caller's budgets; the same tuple, call after call, for a caller no tag budget
        matches (the guard remembers its counters by that tuple)."""
        if not self.by_target:
            return ()
        # A key's scope and user never change, so its id alone names the answer (cheaper to
        # hash than the scope's four UUIDs).
        memo_key: object = caller.key_id or (caller.scope, caller.user_id)
        fixed = self._memo.get(memo_key)
        if fixed is None:
            fixed = self._fixed(caller)
            if len(self._memo) < MEMO_LIMIT:
                self._memo[memo_key] = fixed
        if not caller.tags:
            return fixed
        tagged: list[BudgetRule] = []
        for pair in caller.tags.items():
            tagged.extend(self.by_target.get(("tag", pair), ()))
        return fixed + tuple(tagged) if tagged else fixed

    def _fixed(self, caller: Caller) -> tuple[BudgetRule, ...]:
        scope = caller.scope
        found: list[BudgetRule] = []
        for kind, target in (
            ("org", scope.org_id),
            ("department", scope.department_id),
            ("team", scope.team_id),
            ("project", scope.project_id),
            ("key", caller.key_id),
            ("user", caller.user_id),
        ):
            if target is not None:
                found.extend(self.by_target.get((kind, target), ()))
        return tuple(found)
