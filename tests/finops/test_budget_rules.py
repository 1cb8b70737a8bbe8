"""Budget periods, counter keys, thresholds and the index that finds a request's budgets."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from capstan.finops.budget_rules import (
    BudgetIndex,
    BudgetRule,
    Caller,
    PeriodKind,
    counter_key,
    crossed,
    period_end,
    period_start,
)
from capstan.identity.scope import ScopePath

ORG, DEPT, TEAM, PROJECT = (uuid.uuid4() for _ in range(4))
KEY, USER = uuid.uuid4(), uuid.uuid4()
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


def rule(**overrides: object) -> BudgetRule:
    fields: dict[str, object] = {
        "id": uuid.uuid4(),
        "name": "b",
        "scope_kind": "team",
        "scope_id": TEAM,
        "tag": None,
        "period": "monthly",
        "limit": 12_500_000,
        "action": "block",
    }
    fields.update(overrides)
    return BudgetRule(**fields)  # type: ignore[arg-type]


def test_a_monthly_period_starts_on_the_first_at_midnight_utc() -> None:
    at = datetime(2026, 11, 25, 23, 59, tzinfo=UTC)

    assert period_start("monthly", at) == datetime(2026, 11, 1, tzinfo=UTC)
    assert period_end("monthly", datetime(2026, 12, 1, tzinfo=UTC)) == datetime(
        2027, 1, 1, tzinfo=UTC
    )


def test_a_weekly_period_starts_on_monday() -> None:
    wednesday = datetime(2026, 11, 25, 12, tzinfo=UTC)

    assert period_start("weekly", wednesday) == datetime(2026, 11, 23, tzinfo=UTC)


@given(moments, st.sampled_from(["daily", "weekly", "monthly"]))
def test_every_moment_lies_inside_its_period(at: datetime, period: PeriodKind) -> None:
    start = period_start(period, at)
    end = period_end(period, start)

    assert end is not None
    assert start <= at < end


@given(moments, st.sampled_from(["daily", "weekly", "monthly"]))
def test_the_next_period_gets_a_new_counter(at: datetime, period: PeriodKind) -> None:
    budget = rule(period=period)
    end = period_end(period, period_start(period, at))
    assert end is not None

    assert counter_key(budget, end)[0] != counter_key(budget, end - timedelta(microseconds=1))[0]
    assert counter_key(budget, at)[0] == counter_key(budget, period_start(period, at))[0]


def test_a_total_budget_never_rolls_over() -> None:
    budget = rule(period="total")

    assert (
        counter_key(budget, datetime(2026, 1, 1, tzinfo=UTC))[0]
        == counter_key(budget, datetime(2031, 7, 4, tzinfo=UTC))[0]
    )


def test_a_counter_outlives_its_period() -> None:
    at = datetime(2026, 11, 30, 23, tzinfo=UTC)

    _, ttl = counter_key(rule(period="monthly"), at)

    assert ttl > timedelta(hours=1).total_seconds()


def test_thresholds_are_crossed_once_at_their_exact_amount() -> None:
    limit = 12_500_000

    assert crossed((50, 80, 100), limit, 9_999_999, 10_000_000) == [80]
    assert crossed((50, 80, 100), limit, 10_000_000, 10_000_001) == []
    assert crossed((50, 80, 100), limit, 0, 13_000_000) == [50, 80, 100]


@given(st.integers(1, 10**12), st.lists(st.integers(0, 10**9), min_size=1, max_size=30))
def test_spending_in_steps_crosses_each_threshold_at_most_once(
    limit: int, steps: list[int]
) -> None:
    seen: list[int] = []
    spent = 0
    for step in steps:
        seen += crossed((50, 80, 100), limit, spent, spent + step)
        spent += step

    assert len(seen) == len(set(seen))
    assert seen == [t for t in (50, 80, 100) if t * limit <= spent * 100]


def test_a_request_finds_the_budgets_of_its_org_team_key_user_and_tags() -> None:
    org_budget = rule(scope_kind="org", scope_id=ORG)
    team_budget = rule(scope_kind="team", scope_id=TEAM)
    key_budget = rule(scope_kind="key", scope_id=KEY)
    user_budget = rule(scope_kind="user", scope_id=USER)
    tag_budget = rule(scope_kind="tag", scope_id=None, tag=("env", "prod"))
    other_team = rule(scope_kind="team", scope_id=uuid.uuid4())
    other_tag = rule(scope_kind="tag", scope_id=None, tag=("env", "dev"))
    index = BudgetIndex.of(
        [org_budget, team_budget, key_budget, user_budget, tag_budget, other_team, other_tag]
    )
    caller = Caller(ScopePath(ORG, DEPT, TEAM, PROJECT), KEY, USER, {"env": "prod"})

    found = index.for_caller(caller)

    assert {r.id for r in found} == {
        org_budget.id,
        team_budget.id,
        key_budget.id,
        user_budget.id,
        tag_budget.id,
    }


def test_an_organization_without_budgets_has_an_empty_index() -> None:
    index = BudgetIndex.of([])

    assert not index
    assert index.for_caller(Caller(ScopePath(ORG))) == ()
