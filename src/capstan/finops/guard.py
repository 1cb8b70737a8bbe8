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
    counter_window,
    crossed,
)
from capstan.finops.counters import MAX_AMOUNT, Charge, CounterStore, CounterStoreUnavailable
from capstan.finops.memory_counters import MemoryCounters
from capstan.finops.money import format_usd
from capstan.gateway.errors import GatewayError

log = logging.getLogger(__name__)

# Longer than any request may take (the deadline is capped at an hour).
HOLD_S = 3900.0
KEY_MEMO_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class Hold:
    """What one request reserved, to be settled when it ends: one counter per rule, in order."""

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
        # The memory store answers without I/O: called directly, with no coroutine or task.
        self.inline = counters if isinstance(counters, MemoryCounters) else None
        # Per budget: its current counter key, ttl, and the moment the period ends; computing
        # a period's bounds is datetime arithmetic, too slow to repeat on every call.
        self._keys: dict[uuid.UUID, tuple[str, float, datetime | None]] = {}

    def _key(self, rule: BudgetRule, at: datetime) -> tuple[str, float]:
        known = self._keys.get(rule.id)
        if known is not None and (known[2] is None or at < known[2]):
            return known[0], known[1]
        key, ttl, end = counter_window(rule, at)
        if len(self._keys) > KEY_MEMO_LIMIT:
            self._keys.clear()
        self._keys[rule.id] = (key, ttl, end)
        return key, ttl

    def admit_inline(
        self, index: BudgetIndex, caller: Caller, worst_case: int, request_id: str, at: datetime
    ) -> Hold | None:
        """`admit` on the memory store, without a coroutine: it runs on every budgeted call."""
        inline = self.inline
        assert inline is not None, "the counter store needs I/O: await admit()"
        plan = self._plan(index, caller, worst_case, at)
        if plan is None:
            return None
        rules, keys, ttls, limits = plan
        downgraded: BudgetRule | None = None
        while True:
            at_limit = inline.reserve_same(request_id, keys, worst_case, limits, ttls, HOLD_S)
            if at_limit < 0:
                return Hold(request_id, rules, keys, ttls, worst_case, downgraded)
            level = inline.level_now(keys[at_limit])
            rule = _downgrade(rules, limits, at_limit, level.spent + level.reserved)
            downgraded = downgraded or rule

    async def admit(
        self, index: BudgetIndex, caller: Caller, worst_case: int, request_id: str, at: datetime
    ) -> Hold | None:
        """Reserve `worst_case` micro-dollars on every budget of `caller`; None when no budget
        applies. Raises the 429 of the first `block` budget it would pass; a `downgrade`
        budget at its limit stays counted but no longer limits the call (`downgraded_by`)."""
        if self.inline is not None:
            return self.admit_inline(index, caller, worst_case, request_id, at)
        plan = self._plan(index, caller, worst_case, at)
        if plan is None:
            return None
        rules, keys, ttls, limits = plan
        downgraded: BudgetRule | None = None
        while True:
            charges = [
                Charge(key, worst_case, limit, ttl)
                for key, limit, ttl in zip(keys, limits, ttls, strict=True)
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
                return Hold(request_id, rules, keys, ttls, worst_case, downgraded)
            used = refusal.spent + refusal.reserved
            rule = _downgrade(rules, limits, keys.index(refusal.key), used)
            downgraded = downgraded or rule

    def _plan(
        self, index: BudgetIndex, caller: Caller, worst_case: int, at: datetime
    ) -> tuple[tuple[BudgetRule, ...], tuple[str, ...], tuple[float, ...], list[int | None]] | None:
        """The caller's budgets, their counters now, and the limits that apply to this call."""
        rules = index.for_caller(caller)
        if not rules:
            return None
        if type(worst_case) is not int or not 0 <= worst_case <= MAX_AMOUNT:
            raise ValueError(f"a reservation must be 0 to {MAX_AMOUNT} micro-dollars")
        keyed = [self._key(rule, at) for rule in rules]
        limits = [None if rule.action == "alert-only" else rule.limit for rule in rules]
        return (
            tuple(rules),
            tuple(key for key, _ in keyed),
            tuple(ttl for _, ttl in keyed),
            limits,
        )

    def settle_inline(self, hold: Hold, cost: int) -> bool:
        """Settle now when the store answers without I/O; False when `settle` must be awaited."""
        if self.inline is None:
            return False
        spent = self.inline.settle_same(hold.id, hold.keys, cost, hold.ttls)
        self._report(hold, cost, spent)
        return True

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
        self._report(hold, cost, [levels[key].spent if key in levels else 0 for key in hold.keys])

    def _report(self, hold: Hold, cost: int, spent: list[int]) -> None:
        """Hand the thresholds this settlement crossed to `on_crossing`."""
        if cost <= 0:
            return
        crossings: list[Crossing] = []
        for rule, key, after in zip(hold.rules, hold.keys, spent, strict=True):
            # Below the lowest threshold (the usual case) nothing can have been crossed.
            if after * 100 < rule.lowest_threshold * rule.limit:
                continue
            crossings.extend(
                Crossing(rule, key, threshold, after)
                for threshold in crossed(rule.thresholds, rule.limit, after - cost, after)
            )
        if crossings:
            self.on_crossing(crossings)


def _downgrade(
    rules: tuple[BudgetRule, ...], limits: list[int | None], at_limit: int, used: int
) -> BudgetRule:
    """The budget at its limit, when it downgrades (it is counted from now on, no longer a
    limit for this call); any other action refuses the call."""
    rule = rules[at_limit]
    if rule.action != "downgrade":
        raise budget_exceeded(rule, used)
    limits[at_limit] = None
    return rule


def budget_exceeded(rule: BudgetRule, used: int) -> GatewayError:
    return GatewayError(
        429,
        f"budget {rule.name!r} ({rule.scope_label or rule.scope_kind}, {rule.period}) is at its "
        f"limit: {format_usd(used)} of {format_usd(rule.limit)} USD spent or reserved",
        type="rate_limit_error",
        code="budget_exceeded",
        param=rule.name,
    )
