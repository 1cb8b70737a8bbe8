"""Budgets and rate limits on the request path: reserve the worst case before the call,
settle the actual cost (tokens, request) after it.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from capstan.finops.budget_rules import BudgetRule, counter_window, crossed
from capstan.finops.counters import MAX_AMOUNT, Charge, CounterStore, CounterStoreUnavailable
from capstan.finops.memory_counters import MemoryCounters
from capstan.finops.money import format_usd
from capstan.finops.ratelimit_rules import RateCap, rate_headers, rate_limited
from capstan.gateway.errors import GatewayError

log = logging.getLogger(__name__)

# Longer than any request may take (the deadline is capped at an hour).
HOLD_S = 3900.0
KEY_MEMO_LIMIT = 100_000


@dataclass(slots=True)
class Hold:
    """What one request reserved, to be settled when it ends: one counter per budget rule,
    then one per rate cap, in order. (Not frozen: one is made per budgeted call, and a frozen
    dataclass pays an `object.__setattr__` per field to be built.)"""

    id: str
    rules: tuple[BudgetRule, ...]
    keys: tuple[str, ...]
    ttls: tuple[float, ...]
    amount: int  # the worst-case cost reserved, micro-dollars
    downgraded_by: BudgetRule | None = None
    caps: tuple[RateCap, ...] = ()
    tokens: int = 0  # the worst-case tokens reserved on token caps
    # `x-ratelimit-*` for the client, when rate limits apply.
    headers: dict[str, str] | None = None
    # Per budget: `spent * 100` below this, no threshold can have been crossed.
    floors: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class _Budgeted:
    """The counters of one set of budgets in their current periods, worked out once and
    reused by every call of the same callers until the first of the periods ends."""

    rules: tuple[BudgetRule, ...]
    keys: tuple[str, ...]
    ttls: tuple[float, ...]
    limits: tuple[int | None, ...]
    floors: tuple[int, ...]
    until: datetime | None  # when the first period ends (None: none ever does)


@dataclass(frozen=True, slots=True)
class Crossing:
    """A budget's spend crossed one of its thresholds in the period starting `period_key`."""

    rule: BudgetRule
    key: str
    threshold: int
    spent: int


@dataclass(slots=True)
class _Plan:
    """The counters one admission reserves on: budgets first, then rate caps."""

    rules: tuple[BudgetRule, ...]
    caps: tuple[RateCap, ...]
    keys: tuple[str, ...]
    ttls: tuple[float, ...]
    limits: list[int | None]
    amounts: tuple[int, ...]
    ends: tuple[float, ...]  # each cap's window end (epoch seconds)
    epoch: float
    floors: tuple[int, ...]


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
        # By the identity of a caller's budget tuple (the index hands the same one to every
        # call of that caller): its counters now. The entry keeps the tuple alive, so its id
        # is never another tuple's.
        self._plans: dict[int, _Budgeted] = {}

    def _budgeted(self, rules: tuple[BudgetRule, ...], at: datetime) -> _Budgeted:
        plan = self._plans.get(id(rules))
        if plan is not None and plan.rules is rules and (plan.until is None or at < plan.until):
            return plan
        windows = [self._window(rule, at) for rule in rules]
        ends = [end for _, _, end in windows if end is not None]
        plan = _Budgeted(
            rules,
            tuple(key for key, _, _ in windows),
            tuple(ttl for _, ttl, _ in windows),
            tuple(None if rule.action == "alert-only" else rule.limit for rule in rules),
            tuple(rule.lowest_threshold * rule.limit for rule in rules),
            min(ends) if ends else None,
        )
        if len(self._plans) > KEY_MEMO_LIMIT:
            self._plans.clear()
        self._plans[id(rules)] = plan
        return plan

    def _window(self, rule: BudgetRule, at: datetime) -> tuple[str, float, datetime | None]:
        """The budget's counter key now, its ttl, and when its period ends."""
        known = self._keys.get(rule.id)
        if known is not None and (known[2] is None or at < known[2]):
            return known
        known = counter_window(rule, at)
        if len(self._keys) > KEY_MEMO_LIMIT:
            self._keys.clear()
        self._keys[rule.id] = known
        return known

    def admit_inline(
        self,
        rules: tuple[BudgetRule, ...],
        worst_case: int,
        request_id: str,
        at: datetime,
        caps: Sequence[RateCap] = (),
        tokens: int = 0,
    ) -> Hold | None:
        """`admit` on the memory store, without a coroutine: it runs on every budgeted call."""
        inline = self.inline
        assert inline is not None, "the counter store needs I/O: await admit()"
        if not caps:  # budgets only: one amount on every key (the common, fastest case)
            if not rules:
                return None
            _check(worst_case)
            budgeted = self._budgeted(rules, at)
            keys, ttls = budgeted.keys, budgeted.ttls
            limits: Sequence[int | None] = budgeted.limits
            downgraded: BudgetRule | None = None
            while True:
                at_limit = inline.reserve_same(request_id, keys, worst_case, limits, ttls, HOLD_S)
                if at_limit < 0:
                    return Hold(
                        request_id,
                        rules,
                        keys,
                        ttls,
                        worst_case,
                        downgraded,
                        floors=budgeted.floors,
                    )
                level = inline.level_now(keys[at_limit])
                limits = list(limits)
                rule = _downgrade(rules, limits, at_limit, level.spent + level.reserved)
                downgraded = downgraded or rule
        plan = self._plan(rules, caps, worst_case, tokens, at)
        downgraded = None
        while True:
            at_limit = inline.reserve_each(
                request_id, plan.keys, plan.amounts, plan.limits, plan.ttls, HOLD_S
            )
            if at_limit < 0:
                used = []
                for key in plan.keys[len(plan.rules) :]:
                    level = inline.level_now(key)
                    used.append(level.spent + level.reserved)
                return self._hold(request_id, plan, worst_case, tokens, downgraded, used)
            level = inline.level_now(plan.keys[at_limit])
            rule = self._refused(plan, at_limit, level.spent + level.reserved)
            downgraded = downgraded or rule

    async def admit(
        self,
        rules: tuple[BudgetRule, ...],
        worst_case: int,
        request_id: str,
        at: datetime,
        caps: Sequence[RateCap] = (),
        tokens: int = 0,
    ) -> Hold | None:
        """Reserve `worst_case` micro-dollars on each budget in `rules` and the call's worst
        case on each rate cap (a request, `tokens`, `worst_case`), all at once; None when
        nothing applies. Raises the 429 of the first `block` budget or rate cap it would pass;
        a `downgrade` budget at its limit stays counted but no longer limits the call
        (`downgraded_by`)."""
        if self.inline is not None:
            return self.admit_inline(rules, worst_case, request_id, at, caps, tokens)
        if not rules and not caps:
            return None
        plan = self._plan(rules, caps, worst_case, tokens, at)
        downgraded: BudgetRule | None = None
        while True:
            charges = [
                Charge(key, amount, limit, ttl)
                for key, amount, limit, ttl in zip(
                    plan.keys, plan.amounts, plan.limits, plan.ttls, strict=True
                )
            ]
            used: list[int] = []
            try:
                refusal = await self.counters.reserve(request_id, charges, HOLD_S, used)
            except CounterStoreUnavailable as exc:
                # Money fails closed; rate limits, which shield upstream quotas, fail open:
                # an outage of the counter store must not stop every call.
                if any(rule.blocks for rule in rules):
                    raise GatewayError(
                        503,
                        "budgets cannot be checked right now (the counter store is "
                        "unreachable); requests under a blocking budget wait until it is back",
                        type="upstream_error",
                        code="budget_store_unavailable",
                        retry_after=1.0,
                    ) from exc
                log.warning("counters unreachable; admitting without them: %s", exc)
                return None
            if refusal is None:
                used = used[len(plan.rules) :]
                return self._hold(request_id, plan, worst_case, tokens, downgraded, used)
            at_limit = plan.keys.index(refusal.key)
            rule = self._refused(plan, at_limit, refusal.spent + refusal.reserved)
            downgraded = downgraded or rule

    def _plan(
        self,
        rules: tuple[BudgetRule, ...],
        caps: Sequence[RateCap],
        worst_case: int,
        tokens: int,
        at: datetime,
    ) -> _Plan:
        _check(worst_case)
        _check(tokens)
        budgeted = self._budgeted(rules, at)
        epoch = at.timestamp()
        windows = [cap.window(epoch) for cap in caps]
        return _Plan(
            rules,
            tuple(caps),
            budgeted.keys + tuple(key for key, _, _ in windows),
            budgeted.ttls + tuple(ttl for _, ttl, _ in windows),
            [*budgeted.limits, *(cap.limit for cap in caps)],
            (worst_case,) * len(rules) + tuple(cap.amount(tokens, worst_case) for cap in caps),
            tuple(end for _, _, end in windows),
            epoch,
            budgeted.floors,
        )

    def _refused(self, plan: _Plan, at_limit: int, used: int) -> BudgetRule:
        """The budget that downgrades the call; raises the 429 of any other refusal."""
        budgets = len(plan.rules)
        if at_limit < budgets:
            return _downgrade(plan.rules, plan.limits, at_limit, used)
        index = at_limit - budgets
        raise rate_limited(plan.caps[index], used, plan.ends[index], plan.epoch)

    @staticmethod
    def _hold(
        request_id: str,
        plan: _Plan,
        worst_case: int,
        tokens: int,
        downgraded: BudgetRule | None,
        used: list[int],
    ) -> Hold:
        headers = rate_headers(plan.caps, used, plan.ends, plan.epoch) if plan.caps else None
        return Hold(
            request_id,
            plan.rules,
            plan.keys,
            plan.ttls,
            worst_case,
            downgraded,
            plan.caps,
            tokens,
            headers,
            plan.floors,
        )

    def settle_inline(self, hold: Hold, cost: int, tokens: int = 0) -> bool:
        """Settle now when the store answers without I/O; False when `settle` must be awaited.
        `tokens` is what the call used, for token caps."""
        inline = self.inline
        if inline is None:
            return False
        if hold.caps:
            spent = inline.settle_each(hold.id, hold.keys, _actual(hold, cost, tokens), hold.ttls)
        else:
            spent = inline.settle_same(hold.id, hold.keys, cost, hold.ttls)
        self._report(hold, cost, spent)
        return True

    async def settle(self, hold: Hold, cost: int, tokens: int = 0) -> None:
        """Release the hold and count `cost` (and, on rate caps, the request and `tokens`);
        thresholds crossed go to `on_crossing`. A store that is away leaves the reservation to
        expire; the event in the store keeps the cost, and counters are rebuilt from events at
        the next start."""
        try:
            levels = await self.counters.settle(
                hold.id,
                dict(zip(hold.keys, _actual(hold, cost, tokens), strict=True)),
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
        for index, floor in enumerate(hold.floors):
            after = spent[index]
            # Below the lowest threshold (the usual case) nothing can have been crossed.
            if after * 100 < floor:
                continue
            rule, key = hold.rules[index], hold.keys[index]
            crossings.extend(
                Crossing(rule, key, threshold, after)
                for threshold in crossed(rule.thresholds, rule.limit, after - cost, after)
            )
        if crossings:
            self.on_crossing(crossings)


def _check(amount: int) -> None:
    if type(amount) is not int or not 0 <= amount <= MAX_AMOUNT:
        raise ValueError(f"a reservation must be 0 to {MAX_AMOUNT}, not {amount!r}")


def _actual(hold: Hold, cost: int, tokens: int) -> list[int]:
    """What each of the hold's counters receives: the cost on budgets, each cap's measure."""
    return [cost] * len(hold.rules) + [cap.amount(tokens, cost) for cap in hold.caps]


def _downgrade(
    rules: Sequence[BudgetRule], limits: list[int | None], at_limit: int, used: int
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
