"""Counters in process memory: the default for a single replica, and the reference that the
Redis store must behave like."""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Mapping, Sequence

from capstan.finops.counters import (
    Charge,
    Level,
    Refusal,
    amounts_by_key,
    check_amount,
    check_hold,
    check_settlement,
    check_ttl,
)

__all__ = ["MemoryCounters"]

_RECHECK_S = 1.0  # how soon to look again at an expired counter that still holds money


class _Counter:
    __slots__ = ("expires_at", "reserved", "spent")

    def __init__(self, spent: int, reserved: int, expires_at: float) -> None:
        self.spent = spent
        self.reserved = reserved
        self.expires_at = expires_at


# An open reservation: when it expires, its keys, the amount held on each, and their counters.
_Open = tuple[float, tuple[str, ...], tuple[int, ...], list[_Counter]]


class MemoryCounters:
    """Counters in plain dicts, for one process.

    It needs no locks because it is used from a single event loop and no method awaits
    anything: each call runs to its end before another starts, which is what makes a
    reservation atomic across its keys. It is not thread-safe.

    Time passes lazily: every call first reclaims the reservations whose hold ran out (a heap of
    `(expires_at, id)`, skipping entries of reservations settled since) and drops counters whose
    ttl passed, so memory stays bounded as budget periods and rate windows roll over. A counter's
    expiry only ever moves later, and a reservation extends it to its own hold, so a counter is
    never dropped while a reservation still holds money on it.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._counters: dict[str, _Counter] = {}
        self._open: dict[str, _Open] = {}
        self._due: list[tuple[float, str]] = []  # may hold settled ids: skipped when popped
        self._expiry: list[tuple[float, str]] = []  # one entry per counter, re-pushed if extended

    def counter_count(self) -> int:
        """How many counters are held now (memory use, for tests and metrics). Not `__len__`,
        which would make an empty store falsy."""
        self._tidy(self._clock())
        return len(self._counters)

    async def reserve(
        self,
        reservation_id: str,
        charges: Sequence[Charge],
        hold_s: float,
        used: list[int] | None = None,
    ) -> Refusal | None:
        refusal = self.reserve_now(reservation_id, charges, hold_s)
        if refusal is None and used is not None:
            for charge in charges:
                level = self.level_now(charge.key)
                used.append(-1 if charge.limit is None else level.spent + level.reserved)
        return refusal

    async def settle(
        self, reservation_id: str, actual: Mapping[str, int], ttl_s: Mapping[str, float]
    ) -> dict[str, Level]:
        return self.settle_now(reservation_id, actual, ttl_s)

    def reserve_now(
        self, reservation_id: str, charges: Sequence[Charge], hold_s: float
    ) -> Refusal | None:
        """`reserve` without a coroutine."""
        amounts_by_key(charges)  # refuses a key given twice
        check_hold(hold_s)
        at_limit = self._reserve(
            reservation_id,
            tuple(charge.key for charge in charges),
            tuple(charge.amount for charge in charges),
            [charge.limit for charge in charges],
            [charge.ttl_s for charge in charges],
            hold_s,
        )
        if at_limit < 0:
            return None
        charge = charges[at_limit]
        assert charge.limit is not None
        level = self.level_now(charge.key)
        return Refusal(charge.key, charge.limit, level.spent, level.reserved)

    def settle_now(
        self, reservation_id: str, actual: Mapping[str, int], ttl_s: Mapping[str, float]
    ) -> dict[str, Level]:
        """`settle` without a coroutine (nor a task to run it)."""
        check_settlement(actual, ttl_s)
        now = self._clock()
        self._tidy(now)
        entry = self._release(reservation_id)
        held = entry[1] if entry is not None else ()
        keys = list(actual)
        counted = self._count(keys, list(actual.values()), [ttl_s[key] for key in keys], now)
        levels = {key: Level(c.spent, c.reserved) for key, c in zip(keys, counted, strict=True)}
        for key in held:
            if key in levels:
                continue
            counter = self._counters.get(key)
            if counter is None:
                levels[key] = Level(0, 0)
                continue
            ttl = ttl_s.get(key)
            if ttl is not None and now + ttl > counter.expires_at:
                counter.expires_at = now + ttl
            levels[key] = Level(counter.spent, counter.reserved)
        return levels

    # -- the gateway's fast path -----------------------------------------------------------------

    def reserve_same(
        self,
        reservation_id: str,
        keys: Sequence[str],
        amount: int,
        limits: Sequence[int | None],
        ttls: Sequence[float],
        hold_s: float,
    ) -> int:
        """`reserve_now` for the budget guard, which reserves one amount on distinct keys it
        built itself: no `Charge` objects and no second validation on a path every budgeted
        call takes. Returns the index of the first key that does not fit (nothing changed),
        or -1 once all are reserved."""
        return self._reserve(
            reservation_id, tuple(keys), (amount,) * len(keys), limits, ttls, hold_s
        )

    def reserve_each(
        self,
        reservation_id: str,
        keys: Sequence[str],
        amounts: Sequence[int],
        limits: Sequence[int | None],
        ttls: Sequence[float],
        hold_s: float,
    ) -> int:
        """`reserve_same` with an amount per key (budgets and rate limits in one reservation:
        money, tokens and a request)."""
        return self._reserve(reservation_id, tuple(keys), tuple(amounts), limits, ttls, hold_s)

    def settle_same(
        self, reservation_id: str, keys: Sequence[str], actual: int, ttls: Sequence[float]
    ) -> list[int]:
        """`settle_now` for the budget guard: `actual` on each key; returns each key's spent."""
        return self.settle_each(reservation_id, keys, (actual,) * len(keys), ttls)

    def settle_each(
        self,
        reservation_id: str,
        keys: Sequence[str],
        actual: Sequence[int],
        ttls: Sequence[float],
    ) -> list[int]:
        """`settle_same` with an amount per key. The guard's own hold is settled on the very
        counter objects it reserved on (a counter holding money is never dropped), so the
        path every budgeted call takes looks nothing up."""
        now = self._clock()
        if (self._due and self._due[0][0] <= now) or (self._expiry and self._expiry[0][0] <= now):
            self._tidy(now)
        entry = self._release(reservation_id)
        if entry is None or entry[1] != keys:
            return [c.spent for c in self._count(keys, actual, ttls, now)]
        spent: list[int] = []
        for counter, amount, ttl in zip(entry[3], actual, ttls, strict=True):
            counter.spent += amount
            until = now + ttl
            if until > counter.expires_at:
                counter.expires_at = until
            spent.append(counter.spent)
        return spent

    def level_now(self, key: str) -> Level:
        counter = self._counters.get(key)
        return Level(0, 0) if counter is None else Level(counter.spent, counter.reserved)

    # -- shared by both paths --------------------------------------------------------------------

    def _reserve(
        self,
        reservation_id: str,
        keys: tuple[str, ...],
        amounts: tuple[int, ...],
        limits: Sequence[int | None],
        ttls: Sequence[float],
        hold_s: float,
    ) -> int:
        """All or nothing: the index of the first key over its limit, or -1 once every amount
        is reserved and the reservation (its keys and amounts) remembered for `hold_s`."""
        now = self._clock()
        if (self._due and self._due[0][0] <= now) or (self._expiry and self._expiry[0][0] <= now):
            self._tidy(now)
        if reservation_id in self._open:
            raise ValueError(f"reservation {reservation_id} is already open")
        counters = self._counters
        found = [counters.get(key) for key in keys]
        for index, limit in enumerate(limits):
            if limit is not None:
                counter = found[index]
                used = 0 if counter is None else counter.spent + counter.reserved
                if used + amounts[index] > limit:
                    return index
        if not keys:
            return -1
        held: list[_Counter] = []
        for index, counter in enumerate(found):
            ttl = ttls[index]
            until = now + (ttl if ttl > hold_s else hold_s)
            if counter is None:
                counter = counters[keys[index]] = _Counter(0, amounts[index], until)
                heapq.heappush(self._expiry, (until, keys[index]))
            else:
                counter.reserved += amounts[index]
                if until > counter.expires_at:
                    counter.expires_at = until
            held.append(counter)
        expires_at = now + hold_s
        self._open[reservation_id] = (expires_at, keys, amounts, held)
        heapq.heappush(self._due, (expires_at, reservation_id))
        return -1

    def _release(self, reservation_id: str) -> _Open | None:
        """Take what the reservation still held off `reserved` (nothing if it was already
        settled or reclaimed). Its counters are the very objects it reserved on: a counter
        holding money is never dropped, so no lookup is needed."""
        entry = self._open.pop(reservation_id, None)
        if entry is None:
            return None
        for counter, amount in zip(entry[3], entry[2], strict=True):
            counter.reserved -= amount
        self._compact_due()
        return entry

    def _count(
        self, keys: Sequence[str], amounts: Sequence[int], ttls: Sequence[float], now: float
    ) -> list[_Counter]:
        """Add each amount to its key's `spent`, keeping the key alive for its ttl."""
        counters = self._counters
        counted: list[_Counter] = []
        for key, amount, ttl in zip(keys, amounts, ttls, strict=True):
            until = now + ttl
            counter = counters.get(key)
            if counter is None:
                counter = counters[key] = _Counter(amount, 0, until)
                heapq.heappush(self._expiry, (until, key))
            else:
                counter.spent += amount
                if until > counter.expires_at:
                    counter.expires_at = until
            counted.append(counter)
        return counted

    async def add_spent(self, key: str, amount: int, ttl_s: float) -> Level:
        check_amount("amount", amount, key)
        check_ttl("ttl_s", ttl_s, key)
        now = self._clock()
        self._tidy(now)
        [counter] = self._count((key,), (amount,), (ttl_s,), now)
        return Level(counter.spent, counter.reserved)

    async def levels(self, keys: Sequence[str]) -> dict[str, Level]:
        self._tidy(self._clock())
        levels: dict[str, Level] = {}
        for key in keys:
            counter = self._counters.get(key)
            levels[key] = Level(0, 0) if counter is None else Level(counter.spent, counter.reserved)
        return levels

    async def seed(self, key: str, spent: int, ttl_s: float) -> bool:
        check_amount("spent", spent, key)
        check_ttl("ttl_s", ttl_s, key)
        now = self._clock()
        self._tidy(now)
        if key in self._counters:
            return False
        self._counters[key] = _Counter(spent, 0, now + ttl_s)
        heapq.heappush(self._expiry, (now + ttl_s, key))
        return True

    async def reclaim(self) -> int:
        return self._tidy(self._clock())

    async def close(self) -> None:
        return None

    def _tidy(self, now: float) -> int:
        """Reclaim the reservations due by `now`, then drop the counters expired by `now`;
        returns how many reservations were reclaimed. Both heaps are checked at their head
        only, so a call with nothing due costs two comparisons."""
        reclaimed = 0
        due = self._due
        if due and due[0][0] <= now:
            while due and due[0][0] <= now:
                expires_at, reservation_id = heapq.heappop(due)
                entry = self._open.get(reservation_id)
                if entry is None or entry[0] != expires_at:
                    continue  # settled already (or reopened with a later hold)
                del self._open[reservation_id]
                for held, amount in zip(entry[3], entry[2], strict=True):
                    held.reserved -= amount
                reclaimed += 1
        expiry = self._expiry
        if expiry and expiry[0][0] <= now:
            counters = self._counters
            while expiry and expiry[0][0] <= now:
                _, key = heapq.heappop(expiry)
                counter = counters.get(key)
                if counter is None:
                    continue
                if counter.expires_at > now:
                    heapq.heappush(expiry, (counter.expires_at, key))
                elif counter.reserved:
                    # Not expected (a reservation extends its counters to its own hold), but
                    # money still held must not vanish: look again shortly.
                    heapq.heappush(expiry, (now + _RECHECK_S, key))
                else:
                    del counters[key]
        return reclaimed

    def _compact_due(self) -> None:
        """Settled reservations leave their entry in the due heap until their hold would have
        run out; rebuild it when such leftovers dominate, so its size follows the open
        reservations rather than the request rate times the hold."""
        if len(self._due) > 2 * len(self._open) + 1024:
            self._due = [(entry[0], rid) for rid, entry in self._open.items()]
            heapq.heapify(self._due)
