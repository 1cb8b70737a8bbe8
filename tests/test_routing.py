"""Candidate order: the pure routing core, on hand-built snapshots (no server, no database)."""

from __future__ import annotations

import random
from collections import Counter

from capstan.gateway.catalog import default_catalog
from capstan.gateway.config.snapshot import Alias, Deployment, RoutingTable, Target
from capstan.gateway.providers.base import Upstream
from capstan.gateway.routing import LatencyTracker, candidates

CATALOG = default_catalog()


def deployment(name: str, model: str = "gpt-4o-mini") -> Deployment:
    upstream = Upstream(provider="p", kind="openai", base_url="http://x/v1", model=model)
    return Deployment(name, "p", "openai", model, upstream, None, CATALOG.get(model))


def table(*aliases: Alias, deployments: tuple[Deployment, ...] = ()) -> RoutingTable:
    found = deployments or tuple(deployment(t.deployment) for a in aliases for t in a.targets)
    return RoutingTable({d.name: d for d in found}, {a.name: a for a in aliases})


def alias(name: str, strategy: str, *targets: Target, fallbacks: tuple[str, ...] = ()) -> Alias:
    return Alias(name, strategy, targets, fallbacks)


def names(found: list[Deployment]) -> list[str]:
    return [d.name for d in found]


def test_an_unknown_name_has_no_candidates() -> None:
    assert candidates(table(), "nope", rng=random.Random(0)) == []


def test_a_deployment_name_is_its_only_candidate() -> None:
    routes = table(alias("a", "weighted", Target("d1")))
    assert names(candidates(routes, "d1", rng=random.Random(0))) == ["d1"]


def test_weighted_first_picks_follow_the_weights() -> None:
    routes = table(alias("a", "weighted", Target("heavy", weight=3), Target("light", weight=1)))
    rng = random.Random(42)
    firsts = Counter(candidates(routes, "a", rng=rng)[0].name for _ in range(4000))
    assert 0.70 < firsts["heavy"] / 4000 < 0.80


def test_weighted_keeps_every_target_for_fallback_except_zero_weights() -> None:
    routes = table(
        alias("a", "weighted", Target("d1"), Target("d2", weight=2), Target("off", weight=0))
    )
    assert sorted(names(candidates(routes, "a", rng=random.Random(1)))) == ["d1", "d2"]


def test_priority_orders_by_priority_then_weight() -> None:
    routes = table(
        alias(
            "a",
            "priority",
            Target("backup", priority=1),
            Target("small", priority=0, weight=1),
            Target("big", priority=0, weight=5),
        )
    )
    assert names(candidates(routes, "a", rng=random.Random(0))) == ["big", "small", "backup"]


def test_lowest_cost_orders_by_catalog_price_with_unknown_prices_last() -> None:
    routes = table(
        alias("a", "lowest-cost", Target("pricey"), Target("mystery"), Target("cheap")),
        deployments=(
            deployment("pricey", "gpt-4o"),
            deployment("mystery", "no-such-model"),
            deployment("cheap", "gpt-4o-mini"),
        ),
    )
    assert names(candidates(routes, "a", rng=random.Random(0))) == ["cheap", "pricey", "mystery"]


def test_least_latency_tries_unmeasured_deployments_first_then_the_fastest() -> None:
    tracker = LatencyTracker()
    tracker.observe("slow", 2.0)
    tracker.observe("fast", 0.1)
    routes = table(alias("a", "least-latency", Target("slow"), Target("fast"), Target("new")))
    found = candidates(routes, "a", rng=random.Random(0), latency=tracker.averages)
    assert names(found) == ["new", "fast", "slow"]


def test_latency_is_an_exponentially_weighted_average() -> None:
    tracker = LatencyTracker()
    tracker.observe("d", 1.0)
    tracker.observe("d", 2.0)
    assert tracker.averages["d"] == 1.2


def test_fallbacks_follow_the_targets_each_deployment_once_and_cycles_end() -> None:
    first = alias("first", "priority", Target("d1"), Target("d2"), fallbacks=("second", "d3"))
    second = alias("second", "priority", Target("d2"), Target("d4"), fallbacks=("first",))
    routes = table(
        first,
        second,
        deployments=tuple(deployment(n) for n in ("d1", "d2", "d3", "d4")),
    )
    assert names(candidates(routes, "first", rng=random.Random(0))) == ["d1", "d2", "d4", "d3"]
