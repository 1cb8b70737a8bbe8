"""Budget and rate-limit counters: the interface both stores keep, and its arithmetic.

Budgets are enforced by reservation. Admitting a model call reserves its worst-case cost on
every counter it touches, all or nothing; its end *settles*: the reservation is released and
the actual amount added to `spent`. Since a call is admitted only when the reservation fits,
recorded spend can never pass a blocking limit, whatever the concurrency and the number of
replicas sharing the store. A reservation whose request died is reclaimed after its hold.

Amounts are plain integers (micro-dollars, tokens or requests) kept below 2**53, so the Redis
store's Lua arithmetic, which works in doubles, stays exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "MAX_AMOUNT",
    "Charge",
    "CounterStore",
    "CounterStoreUnavailable",
    "Level",
    "Refusal",
    "amounts_by_key",
    "check_amount",
    "check_hold",
    "check_settlement",
    "check_ttl",
    "fits",
]

MAX_AMOUNT = 2**53 - 1
"""The largest amount or limit accepted: about $9 billion in micro-dollars. Larger integers are
not exact in the doubles that Redis's Lua computes with, and a limit check must be exact."""

_INF = math.inf


class CounterStoreUnavailable(Exception):
    """The counter store could not be reached or refused to work; nothing is known to have
    changed. The gateway decides whether that means refusing the call or admitting it uncounted;
    the store does not guess."""


def check_amount(what: str, value: int, key: str = "") -> None:
    if type(value) is not int or not 0 <= value <= MAX_AMOUNT:
        _reject_amount(what, value, key)


def check_ttl(what: str, value: float, key: str = "") -> None:
    if not 0 < value < _INF:  # also refuses NaN
        where = f" for {key}" if key else ""
        raise ValueError(f"{what}{where} must be a positive number of seconds, not {value!r}")


def _reject_amount(what: str, value: object, key: str) -> None:
    """Kept apart so the checks on the request path build no message unless one is needed."""
    where = f" for {key}" if key else ""
    if type(value) is not int:
        raise TypeError(f"{what}{where} must be an int, not {type(value).__name__}")
    raise ValueError(f"{what}{where} must be between 0 and {MAX_AMOUNT}, not {value}")


@dataclass(frozen=True, slots=True)
class Charge:
    """One counter a request touches, checked when built so a store never sees a bad one.

    `key` is the counter's name without the installation's namespace (such as
    `budget:<uuid>:2026-11-01`); `amount` is what to reserve; `limit` refuses the reservation
    when `spent + reserved + amount` would pass it (None only counts); `ttl_s` is how long the
    counter must live after its last change, typically until its period ends plus a margin.
    """

    key: str
    amount: int
    limit: int | None
    ttl_s: float

    def __post_init__(self) -> None:
        # One inline test on the request path (the gateway builds several charges per call);
        # the message is worked out only for a bad charge.
        amount, limit = self.amount, self.limit
        if (
            type(amount) is not int
            or not 0 <= amount <= MAX_AMOUNT
            or (limit is not None and (type(limit) is not int or not 0 <= limit <= MAX_AMOUNT))
            or not 0 < self.ttl_s < _INF
            or not self.key
        ):
            _reject_charge(self)


def _reject_charge(charge: Charge) -> None:
    if not charge.key:
        raise ValueError("a charge needs a counter key")
    check_amount("amount", charge.amount, charge.key)
    if charge.limit is not None:
        check_amount("limit", charge.limit, charge.key)
    check_ttl("ttl_s", charge.ttl_s, charge.key)


@dataclass(frozen=True, slots=True)
class Refusal:
    """The first charge that did not fit, with the counter as it stood, so the caller can say
    which budget or rate limit stopped the request and how close it was."""

    key: str
    limit: int
    spent: int
    reserved: int


@dataclass(frozen=True, slots=True)
class Level:
    """What a counter holds now: money (or tokens, requests) settled, and money still held by
    reservations whose requests are running."""

    spent: int
    reserved: int


def fits(charge: Charge, spent: int, reserved: int) -> bool:
    """Whether `charge` can be reserved on a counter at this level. Compared with `>`, so a
    reservation may use the last micro-dollar of a budget; a zero-amount charge is refused only
    once the counter is already past its limit (spend nobody could foresee)."""
    return charge.limit is None or spent + reserved + charge.amount <= charge.limit


def amounts_by_key(charges: Sequence[Charge]) -> dict[str, int]:
    """What a reservation records: one amount per key. The same key twice means the caller
    built its scopes wrongly, and merging them silently would hide that."""
    amounts = {charge.key: charge.amount for charge in charges}
    if len(amounts) != len(charges):
        keys = [charge.key for charge in charges]
        twice = sorted({key for key in keys if keys.count(key) > 1})
        raise ValueError(f"each counter key may appear once in a reservation: {twice}")
    return amounts


def check_hold(hold_s: float) -> None:
    check_ttl("hold_s", hold_s)


def check_settlement(actual: Mapping[str, int], ttl_s: Mapping[str, float]) -> None:
    """Every key that receives spend may be created by it, so it needs a lifetime: a counter
    without one would outlive its period forever."""
    for key, amount in actual.items():
        if type(amount) is not int or not 0 <= amount <= MAX_AMOUNT:
            _reject_amount("actual amount", amount, key)
        if key not in ttl_s:
            raise ValueError(f"no ttl_s given for {key}, which receives spend")
    for key, ttl in ttl_s.items():
        if not 0 < ttl < _INF:
            check_ttl("ttl_s", ttl, key)


class CounterStore(Protocol):
    """Where counters live: process memory (one replica) or Redis (many). Every operation is
    atomic across all the keys it names."""

    async def reserve(
        self,
        reservation_id: str,
        charges: Sequence[Charge],
        hold_s: float,
        used: list[int] | None = None,
    ) -> Refusal | None:
        """All or nothing: if every charge with a limit fits, add each amount to its key's
        `reserved`, remember the reservation for `hold_s` seconds (then it is reclaimed: its
        amounts leave `reserved`), and return None; otherwise change nothing and return the
        first charge that does not fit. An id that is still open raises ValueError. A `used`
        list receives, on success, each limited charge's `spent + reserved` after it (-1 for
        a charge without a limit): what a rate limit's remaining allowance is read from."""
        ...

    async def settle(
        self, reservation_id: str, actual: Mapping[str, int], ttl_s: Mapping[str, float]
    ) -> dict[str, Level]:
        """Release what the reservation still holds on each of its keys (nothing if it was
        already reclaimed or settled: settling twice must not release twice) and add
        `actual[key]` to that key's `spent`: also on keys the reservation did not hold, so a
        late settlement after a reclaim still counts the money. The spend is added on every
        call: settle each request once. `ttl_s` needs every key in `actual`. Returns each
        touched key's new Level."""
        ...

    async def add_spent(self, key: str, amount: int, ttl_s: float) -> Level:
        """Spend with no reservation: usage the gateway could not foresee. It is counted even
        past a limit, because the money is already spent; later reservations then refuse."""
        ...

    async def levels(self, keys: Sequence[str]) -> dict[str, Level]:
        """Each key's current level; unknown (or expired) keys read as Level(0, 0)."""
        ...

    async def seed(self, key: str, spent: int, ttl_s: float) -> bool:
        """Set `spent` for a key that does not exist yet (rebuilding counters from the database
        at start); False, changing nothing, if it exists (another replica seeded it, or traffic
        already counted)."""
        ...

    async def reclaim(self) -> int:
        """Release every reservation whose hold ran out; returns how many."""
        ...

    async def close(self) -> None: ...
