"""FinOps recommendations, the core (`capstan.finops.recommendations` and
`recommendation_hygiene`): plain data in, plain recommendations out, on a small catalog made
for the tests so every number can be worked out by hand. The catalog: `big` ($10 in, $5
cached, $30 out, text and images, tools), `small` ($1, $0.50, $3, the same capabilities),
`mini` ($0.50, $1.50, the same, but only in the catalog), `textonly` ($0.10, $0.30: no
images), `notools`, `short` (1,500 tokens of context), `nocache` (no cached price) and an
embedding model.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capstan.finops.costing import Usage, cost_of
from capstan.finops.prices import PriceBook
from capstan.finops.recommendation_hygiene import (
    BudgetSpend,
    DeploymentActivity,
    KeyActivity,
    budget_runouts,
    limit_reached_at,
    unused_deployments,
    unused_keys,
)
from capstan.finops.recommendations import (
    KINDS,
    Deployed,
    PromptRepeats,
    Recommendation,
    Route,
    Thresholds,
    TokenMix,
    caching_saving,
    cheaper_models,
    monthly,
    parse_kinds,
    prompt_caching,
    ranked,
)
from capstan.finops.reports import forecast
from capstan.gateway.catalog.catalog import Catalog, CatalogModel

NOW = datetime(2026, 11, 11, tzinfo=UTC)  # ten days into November


def model(
    name: str,
    prices: tuple[str, str, str | None],
    *,
    mode: str = "chat",
    context: int = 128_000,
    output: int | None = 16_384,
    modalities: tuple[str, ...] = ("text", "image"),
    tools: bool = True,
) -> CatalogModel:
    input_price, output_price, cached = prices
    return CatalogModel(
        *(name, "vendor", "openai", name, mode, context, output, modalities, ("text",), tools),
        supports_streaming=True,
        input_price=Decimal(input_price),
        output_price=Decimal(output_price),
        cached_input_price=None if cached is None else Decimal(cached),
        effective_date=date(2025, 1, 1),
    )


CATALOG = Catalog(
    [
        model("big", ("10", "30", "5")),
        model("small", ("1", "3", "0.5")),
        model("mini", ("0.5", "1.5", "0.25")),
        model("textonly", ("0.1", "0.3", None), modalities=("text",)),
        model("notools", ("0.1", "0.3", None), tools=False),
        model("short", ("0.1", "0.3", None), context=1_500),
        model("nocache", ("20", "60", None)),
        model("embedder", ("0.02", "0", None), mode="embedding", output=None),
    ]
)
BOOK = PriceBook(CATALOG)
BIG = Deployed("big-dep", "big", NOW - timedelta(days=90), aliases=("chat",))
SMALL = Deployed("small-dep", "small", NOW - timedelta(days=90))
ROUTE = Route("chat", "p-1", "scoring", "big-dep", "big")


def mix(prompt: int = 1_000_000, completion: int = 100_000, **fields: int) -> TokenMix:
    """100 calls on `big`, priced: by default $10 + $3 = $13 of tokens, 2,000-token prompts."""
    usage = Usage(prompt, completion, fields.get("cached_tokens", 0))
    cost = cost_of(usage, BOOK.price_for("big-dep", "big", NOW) or _never())
    base: dict[str, Any] = {
        "calls": 100,
        "priced_calls": 100,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cost_micros": cost.total,
        "max_prompt_tokens": 2_000,
        "max_completion_tokens": 500,
    }
    return TokenMix(**base | fields)


def _never() -> Any:
    raise AssertionError("the test catalog prices big")


def cheaper(
    traffic: list[tuple[Route, TokenMix]],
    deployments: tuple[Deployed, ...] = (BIG,),
    **options: Any,
) -> list[Recommendation]:
    settings: dict[str, Any] = {"days": 30, "now": NOW, "aliases": ["chat"]} | options
    return cheaper_models(traffic, catalog=CATALOG, book=BOOK, deployments=deployments, **settings)


# -- cheaper models -------------------------------------------------------------------------------


def test_a_cheaper_model_of_the_same_capabilities_is_recommended_with_its_monthly_saving() -> None:
    [found] = cheaper([(ROUTE, mix())], deployments=(BIG, SMALL))
    assert found.kind == "cheaper_model"
    assert found.scope == {"project": "scoring", "project_id": "p-1", "alias": "chat"}
    assert found.evidence["candidate"]["model"] == "small"
    # $13.00 on big, $1.30 on small, over a 30-day window
    assert found.monthly_saving_micros == 11_700_000
    assert found.evidence["saving_percent"] == 90
    assert found.action == "point alias chat at deployment small-dep"


def test_a_deployed_model_is_preferred_to_a_cheaper_one_only_in_the_catalog() -> None:
    [found] = cheaper([(ROUTE, mix())], deployments=(BIG, SMALL))
    assert found.evidence["candidate"]["deployment"] == "small-dep"
    alternatives = {alt["model"]: alt for alt in found.evidence["alternatives"]}
    assert alternatives["mini"]["needs_new_deployment"] is True
    assert alternatives["mini"]["monthly_saving_micros"] == 12_350_000


def test_without_a_deployed_candidate_the_cheapest_catalog_model_needs_a_deployment() -> None:
    [found] = cheaper([(ROUTE, mix())])
    assert found.evidence["candidate"]["model"] == "mini"
    assert found.evidence["candidate"]["needs_new_deployment"] is True
    assert "(needs a new deployment)" in found.summary
    assert found.action.startswith("add a deployment of mini (openai)")


def test_only_models_with_the_served_model_s_inputs_tools_and_context_are_offered() -> None:
    # textonly (no images), notools, short (1,500 tokens < 2,000) and the embedder are cheaper
    [found] = cheaper([(ROUTE, mix())])
    offered = [found.evidence["candidate"], *found.evidence["alternatives"]]
    assert [option["model"] for option in offered] == ["mini", "small"]


def test_a_candidate_needs_room_for_the_largest_completion_seen() -> None:
    assert cheaper([(ROUTE, mix(max_completion_tokens=20_000))]) == []


@pytest.mark.parametrize(
    "thresholds",
    [Thresholds(min_monthly_saving_micros=13_000_000), Thresholds(min_saving_percent=96)],
)
def test_a_saving_below_either_threshold_is_not_recommended(thresholds: Thresholds) -> None:
    assert cheaper([(ROUTE, mix())], thresholds=thresholds) == []


def test_the_saving_of_a_week_is_scaled_to_30_days() -> None:
    [found] = cheaper([(ROUTE, mix())], deployments=(BIG, SMALL), days=7)
    assert found.monthly_saving_micros == 11_700_000 * 30 // 7


def test_without_evaluation_scores_the_quality_difference_is_unknown_and_says_why() -> None:
    [found] = cheaper([(ROUTE, mix())], deployments=(BIG, SMALL))
    assert found.quality_difference is None
    assert found.quality_note == "no evaluation scores are recorded for big and small"


def test_with_evaluation_scores_the_quality_difference_is_the_candidate_minus_the_current() -> None:
    [found] = cheaper([(ROUTE, mix())], deployments=(BIG, SMALL), scores={"big": 0.9, "small": 0.8})
    assert found.quality_difference == pytest.approx(-0.1)
    assert found.quality_note == "evaluation score 0.8 for small, 0.9 for big"


def test_traffic_served_by_a_model_the_catalog_lacks_gets_no_recommendation() -> None:
    unknown = replace(ROUTE, asked="house-model", deployment="gpu-1", upstream_model="house-v3")
    assert cheaper([(unknown, mix())]) == []


def test_an_alias_routed_to_two_models_is_judged_on_its_whole_mix() -> None:
    half = replace(ROUTE, deployment="small-dep", upstream_model="small")
    cost_on_small = cost_of(Usage(1_000_000, 100_000), BOOK.price_for("", "small", NOW) or _never())
    found = cheaper([(ROUTE, mix()), (half, mix(cost_micros=cost_on_small.total))])
    [recommended] = [r for r in found if r.scope.get("alias") == "chat"]
    assert recommended.evidence["served_models"] == {"big": 100, "small": 100}
    assert recommended.evidence["calls"] == 200


@given(
    prompt=st.integers(0, 10**9),
    cached_share=st.integers(0, 100),
    completion=st.integers(0, 10**8),
    days=st.integers(1, 365),
)
def test_the_saving_is_the_window_cost_difference_scaled_to_a_month(
    prompt: int, cached_share: int, completion: int, days: int
) -> None:
    traffic = mix(prompt, completion, cached_tokens=prompt * cached_share // 100)
    found = cheaper([(ROUTE, traffic)], deployments=(BIG, SMALL), days=days)
    small = BOOK.price_for("small-dep", "small", NOW) or _never()
    on_small = cost_of(traffic.usage(), small).total
    saved = traffic.cost_micros - on_small
    if monthly(saved, days) >= 1_000_000 and saved * 10 >= traffic.cost_micros:
        [recommended] = found
        assert recommended.evidence["candidate"]["model"] == "small"
        assert recommended.monthly_saving_micros == monthly(saved, days)
        assert recommended.evidence["candidate_cost_micros"] == on_small
    else:  # small saves too little; only mini, in the catalog, may still be worth it
        assert all(r.evidence["candidate"]["model"] == "mini" for r in found)


# -- prompt caching -------------------------------------------------------------------------------

REPEATS = PromptRepeats(
    calls=100,
    repeated_calls=80,
    repeated_prompts=4,
    reusable_tokens=76 * 20_000,
    first_write_tokens=4 * 20_000,
    prompt_tokens=100 * 20_000,
    cached_tokens=0,
)


def caching(rows: list[tuple[Route, PromptRepeats]], **options: Any) -> list[Recommendation]:
    settings: dict[str, Any] = {"days": 30, "now": NOW, "aliases": ["chat"]} | options
    return prompt_caching(rows, book=BOOK, deployments=(BIG,), **settings)


def test_repeated_long_prompts_on_a_model_with_a_cached_price_get_a_caching_recommendation() -> (
    None
):
    [found] = caching([(ROUTE, REPEATS)])
    assert found.kind == "prompt_caching"
    assert found.scope == {"project": "scoring", "project_id": "p-1", "alias": "chat"}
    # 1,520,000 reusable tokens at $10 - $5 a million
    assert found.monthly_saving_micros == 7_600_000
    assert found.evidence["repeated_calls"] == 80
    assert found.evidence["average_prompt_tokens"] == 20_000


def test_prompt_tokens_already_read_from_a_cache_are_not_saved_twice() -> None:
    [found] = caching([(ROUTE, replace(REPEATS, cached_tokens=100_000))])
    assert found.monthly_saving_micros == (1_520_000 - 100_000) * 5


@pytest.mark.parametrize(
    ("why", "repeats"),
    [
        ("too few calls", replace(REPEATS, calls=49)),
        ("too little repetition", replace(REPEATS, repeated_calls=19)),
        ("prompts too short to cache", replace(REPEATS, prompt_tokens=100 * 1_000)),
        ("already cached", replace(REPEATS, cached_tokens=100 * 2_001)),
        ("saving under a dollar", replace(REPEATS, reusable_tokens=190_000)),
    ],
)
def test_caching_is_not_recommended_when_it_would_not_pay(why: str, repeats: PromptRepeats) -> None:
    assert caching([(ROUTE, repeats)]) == [], why


def test_caching_is_not_recommended_for_a_model_without_a_cached_price() -> None:
    route = replace(ROUTE, deployment=None, upstream_model="nocache")
    assert caching([(route, REPEATS)]) == []


@given(
    reusable=st.integers(0, 10**10),
    cached=st.integers(0, 10**10),
    writes=st.integers(0, 10**9),
    rates=st.tuples(*[st.integers(0, 10**8)] * 3),
)
def test_a_caching_saving_is_never_negative_nor_above_the_reusable_tokens_at_the_discount(
    reusable: int, cached: int, writes: int, rates: tuple[int, int, int]
) -> None:
    input_rate, cached_rate, write_rate = rates
    price = replace(
        BOOK.price_for("", "big", NOW) or _never(),
        input=input_rate,
        cached_input=cached_rate,
        cache_write=write_rate,
    )
    repeats = replace(
        REPEATS, reusable_tokens=reusable, cached_tokens=cached, first_write_tokens=writes
    )
    saving = caching_saving(repeats, price)
    if cached_rate >= input_rate:
        assert saving is None
    else:
        assert saving is not None
        assert 0 <= saving <= -(-reusable * (input_rate - cached_rate) // 1_000_000)


# -- unused keys and deployments ------------------------------------------------------------------

OLD = NOW - timedelta(days=45)
KEY = KeyActivity("k-1", "batch (cap_ab12…)", "service", OLD, None, None, 0, None)


def test_a_live_key_that_made_no_call_in_the_window_is_suggested_for_revocation() -> None:
    last = NOW - timedelta(days=40)
    [found] = unused_keys([replace(KEY, last_call_at=last)], days=30, now=NOW)
    assert found.kind == "unused_key"
    assert found.scope == {"key": "batch (cap_ab12…)", "key_id": "k-1"}
    assert found.action == "revoke key k-1"
    assert (found.evidence["age_days"], found.evidence["last_call_at"]) == (45, last.isoformat())
    assert "last call 2026-10-02; 45 days old" in found.summary


@pytest.mark.parametrize(
    ("why", "key"),
    [
        ("it called", replace(KEY, calls=1)),
        ("it is revoked", replace(KEY, revoked_at=NOW - timedelta(days=1))),
        ("it has expired", replace(KEY, expires_at=NOW)),
        ("it is younger than the window", replace(KEY, created_at=NOW - timedelta(days=29))),
        ("it runs the control plane", replace(KEY, role="admin")),
    ],
)
def test_a_key_is_not_suggested_when(why: str, key: KeyActivity) -> None:
    assert unused_keys([key], days=30, now=NOW) == [], why


def test_an_idle_deployment_is_suggested_for_removal_after_its_aliases_are_changed() -> None:
    [found] = unused_deployments([DeploymentActivity(BIG, 0, None)], days=30, now=NOW)
    assert found.scope == {"deployment": "big-dep"}
    assert found.action == "take it out of alias chat, then remove deployment big-dep"
    assert found.evidence["last_call_at"] is None
    assert "never called; 90 days old" in found.summary


@pytest.mark.parametrize(
    "activity",
    [DeploymentActivity(BIG, 1, None), DeploymentActivity(replace(BIG, created_at=NOW), 0, None)],
)
def test_a_deployment_that_served_a_call_or_is_newer_than_the_window_is_kept(
    activity: DeploymentActivity,
) -> None:
    assert unused_deployments([activity], days=30, now=NOW) == []


# -- budgets --------------------------------------------------------------------------------------

BUDGET = BudgetSpend("b-1", "search", "team search", "monthly", 100_000_000, "block", 50_000_000)


def test_a_budget_spending_faster_than_its_month_allows_says_when_it_reaches_its_limit() -> None:
    [found] = budget_runouts([BUDGET], now=NOW)  # $50 in 10 days: $100 by the 21st
    assert found.kind == "budget_runout"
    assert found.scope == {"budget": "search", "budget_id": "b-1"}
    assert found.evidence["limit_reached_at"] == "2026-11-21T00:00:00+00:00"
    assert found.evidence["forecast_micros"] == 150_000_000
    assert found.monthly_saving_micros is None


@pytest.mark.parametrize(
    "budget",
    [replace(BUDGET, spent_micros=30_000_000), replace(BUDGET, period="total", spent_micros=99)],
)
def test_a_budget_on_track_or_without_a_period_end_is_not_reported(budget: BudgetSpend) -> None:
    assert budget_runouts([budget], now=NOW) == []


def test_a_budget_over_its_limit_is_reported_as_reached() -> None:
    [found] = budget_runouts([replace(BUDGET, spent_micros=100_000_000)], now=NOW)
    assert found.evidence["already_reached"] is True
    assert "has reached its monthly limit of 100.00 USD" in found.summary


@given(spent=st.integers(1, 10**12), limit=st.integers(1, 10**12), hours=st.integers(1, 719))
def test_a_budget_is_reported_exactly_when_its_forecast_passes_its_limit_before_the_end(
    spent: int, limit: int, hours: int
) -> None:
    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    now = start + timedelta(hours=hours)
    budget = replace(BUDGET, limit_micros=limit, spent_micros=spent)
    found = budget_runouts([budget], now=now)
    assert bool(found) == (spent >= limit or forecast(spent, start, end, now) > limit)
    hits = limit_reached_at(spent, limit, start, now, end)
    if found:
        assert hits is not None
        assert now <= hits < end


# -- ranking, kinds, months -----------------------------------------------------------------------


def test_recommendations_rank_by_saving_with_those_without_one_last() -> None:
    def rec(kind: Any, saving: int | None) -> Recommendation:
        return Recommendation(kind, f"{kind} {saving}", {}, "", {}, saving)

    found = ranked([rec("unused_key", None), rec("prompt_caching", 5), rec("cheaper_model", 9)])
    assert [r.monthly_saving_micros for r in found] == [9, 5, None]


def test_kinds_parse_from_a_comma_separated_list_and_default_to_all() -> None:
    assert parse_kinds("unused_key, cheaper_model") == ("cheaper_model", "unused_key")
    assert parse_kinds(None) == parse_kinds("") == KINDS
    with pytest.raises(ValueError, match="'cheap' is not a kind"):
        parse_kinds("cheap")


@given(micros=st.integers(0, 10**15), days=st.integers(1, 365))
def test_monthly_scales_a_window_to_30_days_rounding_down(micros: int, days: int) -> None:
    scaled = monthly(micros, days)
    assert scaled * days <= micros * 30 < (scaled + 1) * days
    assert monthly(micros, 30) == micros
