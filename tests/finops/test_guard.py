"""The budget guard on plain data: admission and settlement over the memory counters, with the
moment of each call injected, so a period boundary can be crossed without waiting for it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from capstan.finops.budget_rules import BudgetIndex, BudgetRule, Caller
from capstan.finops.guard import BudgetGuard, Crossing
from capstan.finops.memory_counters import MemoryCounters
from capstan.gateway.errors import GatewayError
from capstan.identity.scope import ScopePath

ORG = uuid.uuid4()
CALLER = Caller(ScopePath(ORG))
LAST_SECOND = datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)


def rule(**fields: object) -> BudgetRule:
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "name": "daily-cap",
        "scope_kind": "org",
        "scope_id": ORG,
        "tag": None,
        "period": "daily",
        "limit": 10_000,
        "action": "block",
        "scope_label": "organization",
    }
    values.update(fields)
    return BudgetRule(**values)  # type: ignore[arg-type]


def spend(guard: BudgetGuard, index: BudgetIndex, amount: int, at: datetime) -> None:
    async def run() -> None:
        hold = await guard.admit(index.for_caller(CALLER), amount, uuid.uuid4().hex, at)
        assert hold is not None
        await guard.settle(hold, amount)

    asyncio.run(run())


def admit(guard: BudgetGuard, index: BudgetIndex, amount: int, at: datetime) -> object:
    return asyncio.run(guard.admit(index.for_caller(CALLER), amount, uuid.uuid4().hex, at))


def test_a_daily_budget_rolls_over_at_midnight_without_a_restart() -> None:
    guard = BudgetGuard(MemoryCounters(), lambda _: None)
    index = BudgetIndex.of([rule()])
    spend(guard, index, 10_000, LAST_SECOND)
    with pytest.raises(GatewayError):
        admit(guard, index, 1, LAST_SECOND)

    hold = admit(guard, index, 10_000, LAST_SECOND + timedelta(seconds=1))

    assert hold is not None


def test_a_monthly_budget_rolls_over_on_the_first() -> None:
    guard = BudgetGuard(MemoryCounters(), lambda _: None)
    index = BudgetIndex.of([rule(period="monthly")])
    spend(guard, index, 10_000, LAST_SECOND - timedelta(days=20))

    with pytest.raises(GatewayError):
        admit(guard, index, 1, LAST_SECOND)
    assert admit(guard, index, 1, LAST_SECOND + timedelta(seconds=1)) is not None


def test_a_refusal_is_a_429_naming_the_budget() -> None:
    guard = BudgetGuard(MemoryCounters(), lambda _: None)
    index = BudgetIndex.of([rule()])

    with pytest.raises(GatewayError) as refused:
        admit(guard, index, 10_001, LAST_SECOND)

    assert refused.value.status == 429
    assert refused.value.code == "budget_exceeded"
    assert "daily-cap" in refused.value.message
    assert "organization" in refused.value.message


def test_thresholds_are_reported_once_as_spend_crosses_them() -> None:
    seen: list[Crossing] = []
    guard = BudgetGuard(MemoryCounters(), seen.extend)
    index = BudgetIndex.of([rule(action="alert-only")])

    for _ in range(12):
        spend(guard, index, 1_000, LAST_SECOND)

    assert [c.threshold for c in seen] == [50, 80, 100]
    assert [c.spent for c in seen] == [5_000, 8_000, 10_000]


def test_an_alert_only_budget_counts_past_its_limit() -> None:
    guard = BudgetGuard(MemoryCounters(), lambda _: None)
    index = BudgetIndex.of([rule(action="alert-only")])
    spend(guard, index, 10_000, LAST_SECOND)

    assert admit(guard, index, 5_000, LAST_SECOND) is not None


def test_a_downgrade_budget_at_its_limit_admits_and_names_itself() -> None:
    guard = BudgetGuard(MemoryCounters(), lambda _: None)
    downgrade = rule(action="downgrade", downgrade_to="cheap")
    index = BudgetIndex.of([downgrade])
    spend(guard, index, 10_000, LAST_SECOND)

    hold = asyncio.run(guard.admit(index.for_caller(CALLER), 1, "r", LAST_SECOND))

    assert hold is not None
    assert hold.downgraded_by == downgrade


def test_a_block_budget_still_refuses_when_a_downgrade_budget_is_also_full() -> None:
    guard = BudgetGuard(MemoryCounters(), lambda _: None)
    index = BudgetIndex.of(
        [rule(action="downgrade", downgrade_to="cheap"), rule(name="hard", limit=10_000)]
    )
    spend(guard, index, 10_000, LAST_SECOND)

    with pytest.raises(GatewayError) as refused:
        admit(guard, index, 1, LAST_SECOND)

    assert "hard" in refused.value.message


def test_a_request_without_budgets_reserves_nothing() -> None:
    guard = BudgetGuard(MemoryCounters(), lambda _: None)

    assert admit(guard, BudgetIndex.of([]), 10**9, LAST_SECOND) is None


def test_with_two_full_downgrade_budgets_the_first_names_the_cheaper_alias() -> None:
    guard = BudgetGuard(MemoryCounters(), lambda _: None)
    first = rule(name="org-cap", action="downgrade", downgrade_to="cheap")
    second = rule(name="org-cap-2", action="downgrade", downgrade_to="cheaper")
    index = BudgetIndex.of([first, second])
    spend(guard, index, 10_000, LAST_SECOND)

    hold = asyncio.run(guard.admit(index.for_caller(CALLER), 1, "r", LAST_SECOND))

    assert hold is not None
    assert hold.downgraded_by == first
