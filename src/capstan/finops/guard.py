"""Budgets on the request path: reserve the worst case before the call, settle the actual cost
after it.

Admission reserves the request's worst-case cost on the counter of every budget it touches, in
one atomic step of the counter store, so concurrent requests (and replicas sharing Redis) can
never together pass a `block` limit. A `downgrade` budget at its limit sends the request to its
cheaper alias instead (counted, not refused); an `alert-only` budget only counts. Settlement
releases the reservation and adds what the call really cost; a reservation whose request died
is released by the store after `hold_s`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from capstan.finops.budget_rules import (
    BudgetIndex,
    BudgetRule,
    Caller,
    counter_key,
    crossed,
    period_end,
    period_start,
)
from capstan.finops.counters import Charge, CounterStore, CounterStoreUnavailable
from capstan.finops.money import format_usd
from capstan.gateway.errors import GatewayError

log = logging.getLogger(__name__)

# Longer than any request may take (the deadline is capped at an hour).
HOLD_S = 3900.0
KEY_MEMO_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class Hold:
    """What one request reserved, to be settled when it ends."""

    id: str
    rules: tuple[BudgetRule, ...]
    keys: tuple[str, ...]
    ttls: tuple[float, ...]
    amount: int
    downgraded_by: BudgetRule | None = None


@dataclass(frozen=True, slots=True)
class Crossing:
    """A budget's spend crossed one of its thresholds in the period starting `period_key`."""

    rule: BudgetRule
    key: str
    threshold: int
    spent: int


class BudgetGuard:
    def __init__(
        self, counters: CounterStore, on_crossing: Callable[[list[Crossing]], None]
    ) -> None:
        self.counters = counters
        self.on_crossing = on_crossing
        # Per budget: its current counter key, ttl, and the moment the period ends; computing
        # a period's bounds is datetime arithmetic, too slow to repeat on every call.
        self._keys: dict[uuid.UUID, tuple[str, float, datetime | None]] = {}

    def _key(self, rule: BudgetRule, at: datetime) -> tuple[str, float]:
        known = self._keys.get(rule.id)
        if known is not None and (known[2] is None or at < known[2]):
            return known[0], known[1]
        key, ttl = counter_key(rule, at)
        if len(self._keys) > KEY_MEMO_LIMIT:
            self._keys.clear()
        self._keys[rule.id] = (key, ttl, period_end(rule.period, period_start(rule.period, at)))
        return key, ttl

    async def admit(
        self, index: BudgetIndex, caller: Caller, worst_case: int, request_id: str, at: datetime
    ) -> Hold | None:
        """Reserve `worst_case` micro-dollars on every budget of `caller`; None when no budget
        applies. Raises the 429 of the first `block` budget it would pass."""
        rules = index.for_caller(caller)
        if not rules:
            return None
        keyed = [self._key(rule, at) for rule in rules]
        downgraded: BudgetRule | None = None
        enforced = {rule.id for rule in rules if rule.action != "alert-only"}
        while True:
            charges = [
                Charge(key, worst_case, rule.limit if rule.id in enforced else None, ttl)
                for rule, (key, ttl) in zip(rules, keyed, strict=True)
            ]
            try:
                refusal = await self.counters.reserve(request_id, charges, HOLD_S)
            except CounterStoreUnavailable as exc:
                if any(rule.blocks for rule in rules):
                    raise GatewayError(
                        503,
                        "budgets cannot be checked right now (the counter store is "
                        "unreachable); requests under a blocking budget wait until it is back",
                        type="upstream_error",
                        code="budget_store_unavailable",
                        retry_after=1.0,
                    ) from exc
                log.warning("budget counters unreachable; admitting without them: %s", exc)
                return None
            if refusal is None:
                break
            rule = next(r for r, (key, _) in zip(rules, keyed, strict=True) if key == refusal.key)
            if rule.action != "downgrade":
                raise budget_exceeded(rule, refusal.spent + refusal.reserved)
            downgraded = downgraded or rule
            enforced.discard(rule.id)  # counted from now on, no longer a limit for this call
        return Hold(
            request_id,
            tuple(rules),
            tuple(key for key, _ in keyed),
            tuple(ttl for _, ttl in keyed),
            worst_case,
            downgraded,
        )

    async def settle(self, hold: Hold, cost: int) -> None:
        """Release the hold and count `cost`; thresholds crossed go to `on_crossing`. A store
        that is away leaves the reservation to expire; the event in the store keeps the cost,
        and counters are rebuilt from events at the next start."""
        try:
            levels = await self.counters.settle(
                hold.id,
                dict.fromkeys(hold.keys, cost),
                dict(zip(hold.keys, hold.ttls, strict=True)),
            )
        except CounterStoreUnavailable as exc:
            log.warning("could not settle budget hold %s: %s", hold.id, exc)
            return
        if cost <= 0:
            return
        crossings = [
            Crossing(rule, key, threshold, levels[key].spent)
            for rule, key in zip(hold.rules, hold.keys, strict=True)
            if key in levels
            for threshold in crossed(
                rule.thresholds, rule.limit, levels[key].spent - cost, levels[key].spent
            )
        ]
        if crossings:
            self.on_crossing(crossings)


def budget_exceeded(rule: BudgetRule, used: int) -> GatewayError:
    return GatewayError(
        429,
        f"budget {rule.name!r} ({rule.scope_label or rule.scope_kind}, {rule.period}) is at its "
        f"limit: {format_usd(used)} of {format_usd(rule.limit)} USD spent or reserved",
        type="rate_limit_error",
        code="budget_exceeded",
        param=rule.name,
    )
