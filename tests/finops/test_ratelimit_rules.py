"""Rate limits on plain data: which caps a call touches, fixed windows that roll over by key,
the headers, and the guard reserving caps next to budgets, with the moment injected."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capstan.finops.budget_rules import BudgetRule, Caller
from capstan.finops.guard import BudgetGuard
from capstan.finops.memory_counters import MemoryCounters
from capstan.finops.ratelimit_rules import (
    RateLimitIndex,
    RateLimitRule,
    format_reset,
    rate_headers,
)
from capstan.gateway.errors import GatewayError
from capstan.identity.scope import ScopePath

ORG, PROJECT, KEY = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
CALLER = Caller(ScopePath(ORG, project_id=PROJECT), key_id=KEY)
LAST_SECOND = datetime(2026, 11, 26, 10, 41, 59, tzinfo=UTC)


def limit(**fields: object) -> RateLimitRule:
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "name": "per-minute",
        "scope_kind": "project",
        "scope_id": PROJECT,
        "model": None,
        "period": "minute",
        "scope_label": "project checkout",
    }
    values.update(fields)
    return RateLimitRule(**values)  # type: ignore[arg-type]


def test_a_rule_has_one_cap_per_metric_it_limits() -> None:
    caps = limit(requests=60, usd=2_000_000).caps()

    assert [(cap.metric, cap.limit) for cap in caps] == [("requests", 60), ("usd", 2_000_000)]


def test_a_scope_limit_with_a_model_filter_applies_only_to_that_model() -> None:
    index = RateLimitIndex.of([limit(requests=1, model="gpt-4o")])

    assert len(index.for_call(CALLER, "gpt-4o")) == 1
    assert index.for_call(CALLER, "claude-haiku") == ()


def test_a_model_limit_applies_to_every_caller_of_the_model() -> None:
    index = RateLimitIndex.of([limit(scope_kind="model", scope_id=None, model="gpt-4o", tokens=9)])
    stranger = Caller(ScopePath(ORG))

    assert [cap.metric for cap in index.for_call(stranger, "gpt-4o")] == ["tokens"]
    assert index.for_call(stranger, "gpt-4o-mini") == ()


def test_limits_of_other_projects_and_keys_do_not_apply() -> None:
    index = RateLimitIndex.of(
        [limit(requests=1, scope_id=uuid.uuid4()), limit(scope_kind="key", scope_id=uuid.uuid4())]
    )

    assert index.for_call(CALLER, "gpt-4o") == ()


def test_windows_are_aligned_to_the_minute_and_the_utc_day() -> None:
    [minute] = limit(requests=1).caps()
    [day] = limit(requests=1, period="day").caps()
    epoch = LAST_SECOND.timestamp()

    key, ttl, end = minute.window(epoch)
    day_key, _, day_end = day.window(epoch)

    assert end == (LAST_SECOND + timedelta(seconds=1)).timestamp()
    assert key.endswith(f":{int(end) - 60}")
    assert ttl > end - epoch  # the counter outlives its window
    assert day_end == datetime(2026, 11, 27, tzinfo=UTC).timestamp()
    assert day_key != key


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.02, "20ms"), (1, "1s"), (12.2, "13s"), (360, "6m0s"), (86_399, "23h59m59s")],
)
def test_reset_times_read_like_openais(seconds: float, shown: str) -> None:
    assert format_reset(seconds) == shown


def test_headers_report_the_tightest_cap_of_each_metric() -> None:
    loose = limit(requests=100).caps()[0]
    tight = limit(requests=10, scope_kind="key", scope_id=KEY).caps()[0]

    headers = rate_headers([loose, tight], [5, 9], [60.0, 60.0], 0.0)

    assert headers["x-ratelimit-limit-requests"] == "10"
    assert headers["x-ratelimit-remaining-requests"] == "1"
    assert headers["x-ratelimit-reset-requests"] == "1m0s"


@given(st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=30))
def test_settled_tokens_are_what_the_calls_used_and_never_pass_the_limit(
    used: list[int],
) -> None:
    guard = BudgetGuard(MemoryCounters(), lambda _: None)
    [cap] = limit(tokens=200).caps()
    counted = 0
    for tokens in used:
        try:
            hold = guard.admit_inline((), 0, uuid.uuid4().hex, LAST_SECOND, [cap], 50)
        except GatewayError:
            assert counted + 50 > 200
            continue
        assert hold is not None
        guard.settle_inline(hold, 0, tokens)
        counted += tokens
    assert counted <= 200


def test_a_minute_window_rolls_over_without_a_restart() -> None:
    guard = BudgetGuard(MemoryCounters(), lambda _: None)
    caps = limit(requests=1).caps()
    guard.admit_inline((), 0, "first", LAST_SECOND, caps, 0)
    with pytest.raises(GatewayError) as refused:
        guard.admit_inline((), 0, "second", LAST_SECOND, caps, 0)

    later = guard.admit_inline((), 0, "third", LAST_SECOND + timedelta(seconds=1), caps, 0)

    assert refused.value.code == "rate_limit_exceeded"
    assert refused.value.retry_after == 1
    assert later is not None
    assert later.headers is not None
    assert later.headers["x-ratelimit-remaining-requests"] == "0"


def test_a_refused_rate_limit_leaves_the_budgets_untouched() -> None:
    counters = MemoryCounters()
    guard = BudgetGuard(counters, lambda _: None)
    budget = BudgetRule(
        uuid.uuid4(), "org", "org", ORG, None, "daily", 1_000_000, "block", scope_label="org"
    )
    caps = limit(requests=1).caps()
    guard.admit_inline((budget,), 100, "first", LAST_SECOND, caps, 0)

    with pytest.raises(GatewayError):
        guard.admit_inline((budget,), 100, "second", LAST_SECOND, caps, 0)

    hold = guard.admit_inline((budget,), 0, "third", LAST_SECOND, (), 0)
    assert hold is not None
    assert counters.level_now(hold.keys[0]).reserved == 100  # only the first call's
