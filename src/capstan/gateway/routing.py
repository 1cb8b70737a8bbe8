"""Which deployments a request may go to, in the order to try them.

Pure functions over the routing snapshot: the alias's strategy orders its targets, then each
fallback (an alias or a deployment) adds its own candidates, each deployment once, cycles
ignored. The caller tries them in order until one answers.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from capstan.gateway.config.snapshot import Alias, Deployment, RoutingTable

EWMA_WEIGHT = 0.2


@dataclass
class LatencyTracker:
    """Exponentially weighted moving average of observed latency per deployment, in seconds."""

    averages: dict[str, float] = field(default_factory=dict)

    def observe(self, deployment: str, seconds: float) -> None:
        previous = self.averages.get(deployment)
        self.averages[deployment] = (
            seconds if previous is None else previous + EWMA_WEIGHT * (seconds - previous)
        )


def candidates(
    table: RoutingTable,
    name: str,
    *,
    rng: random.Random,
    latency: Mapping[str, float] | None = None,
) -> list[Deployment]:
    """Deployments for `name` (an alias or a deployment), best first; empty if unknown."""
    ordered: dict[str, Deployment] = {}  # by name, in the order to try them
    visited: set[str] = set()

    def visit(current: str) -> None:
        if current in visited:
            return
        visited.add(current)
        found = table.resolve(current)
        if isinstance(found, Alias):
            for deployment_name in order_targets(found, table, rng, latency or {}):
                deployment = table.deployments.get(deployment_name)
                if deployment is not None:
                    ordered.setdefault(deployment_name, deployment)
            for fallback in found.fallbacks:
                visit(fallback)
        elif found is not None:
            ordered.setdefault(found.name, found)

    visit(name)
    return list(ordered.values())


def static_order(table: RoutingTable, name: str) -> bool:
    """Whether `candidates` always gives `name` the same order for this table (no random
    weights, no latency), so the gateway can compute it once per table."""
    seen: set[str] = set()

    def static(current: str) -> bool:
        if current in seen:
            return True
        seen.add(current)
        found = table.resolve(current)
        if not isinstance(found, Alias):
            return True
        if found.strategy == "least-latency":
            return False
        if found.strategy == "weighted" and sum(t.weight > 0 for t in found.targets) > 1:
            return False
        return all(static(fallback) for fallback in found.fallbacks)

    return static(name)


def order_targets(
    alias: Alias, table: RoutingTable, rng: random.Random, latency: Mapping[str, float]
) -> list[str]:
    targets = list(alias.targets)
    if alias.strategy == "priority":
        targets.sort(key=lambda t: (t.priority, -t.weight))
    elif alias.strategy == "lowest-cost":
        targets.sort(key=lambda t: _unit_price(table.deployments.get(t.deployment)))
    elif alias.strategy == "least-latency":
        # Unmeasured deployments first, so each gets observed before it can be ranked.
        targets.sort(key=lambda t: latency.get(t.deployment, -1.0))
    else:
        # Weighted order without replacement (Efraimidis-Spirakis): the first pick follows the
        # weights, and the rest stay in a weighted order for fallback.
        targets.sort(key=lambda t: -(rng.random() ** (1.0 / max(t.weight, 1e-9))))
    return [t.deployment for t in targets if t.weight > 0 or alias.strategy != "weighted"]


def _unit_price(deployment: Deployment | None) -> float:
    if deployment is None or deployment.catalog is None:
        return float("inf")
    model = deployment.catalog
    return float(model.input_price + model.output_price)
