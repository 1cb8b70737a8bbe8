"""The counter stores: the same behaviour on process memory and on a real Redis."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from capstan.finops.counters import (
    Charge,
    CounterStore,
    CounterStoreUnavailable,
    Level,
    Refusal,
)
from capstan.finops.memory_counters import MemoryCounters
from capstan.finops.redis_counters import RECLAIM_BATCH, RedisCounters
from tests.databases import require_redis

DAY = 86_400.0
HOLD = 60.0
BUDGET = "budget:0196f1a2-0000-7000-8000-000000000001:2026-11-01"
TEAM = "budget:0196f1a2-0000-7000-8000-000000000002:2026-11-01"
RATE = "rate:key-1:tokens:2026-11-25T06:19"


class FakeClock:
    """Seconds that move only when told (epoch-like, so it also serves the Redis store)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


StoreFactory = Callable[[FakeClock], CounterStore]


@dataclass
class RedisSpace:
    """A namespace of its own on the test Redis, deleted after the test (xdist-safe)."""

    url: str
    namespace: str

    def store(self, clock: FakeClock) -> CounterStore:
        return RedisCounters(self.url, self.namespace, clock=clock)

    def pttl(self, name: str) -> int:
        client = redis.Redis.from_url(self.url)
        try:
            return int(client.pttl(self.namespace + name))
        finally:
            client.close()


@pytest.fixture
def redis_space() -> Iterator[RedisSpace]:
    url = require_redis()
    space = RedisSpace(url, f"test:finops:{uuid.uuid4().hex}:")
    yield space
    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(match=space.namespace + "*"):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest) -> StoreFactory:
    if request.param == "memory":
        return MemoryCounters
    space: RedisSpace = request.getfixturevalue("redis_space")
    return space.store


def play(backend: StoreFactory, body: Callable[[CounterStore, FakeClock], Awaitable[None]]) -> None:
    async def main() -> None:
        clock = FakeClock()
        store = backend(clock)
        try:
            await body(store, clock)
        finally:
            await store.close()

    asyncio.run(main())


def rid() -> str:
    return str(uuid.uuid4())


def charge(key: str, amount: int, limit: int | None = None, ttl_s: float = DAY) -> Charge:
    return Charge(key, amount, limit, ttl_s)


def test_a_reservation_that_fits_is_added_to_reserved(backend: StoreFactory) -> None:
    async def body(store: CounterStore, clock: FakeClock) -> None:
        charges = [charge(BUDGET, 700, limit=1_000), charge(RATE, 50)]
        assert await store.reserve(rid(), charges, HOLD) is None
        assert await store.levels([BUDGET, RATE]) == {BUDGET: Level(0, 700), RATE: Level(0, 50)}

    play(backend, body)


def test_settling_moves_the_actual_amount_to_spent_and_releases_the_rest(
    backend: StoreFactory,
) -> None:
    async def body(store: CounterStore, clock: FakeClock) -> None:
        first, second = rid(), rid()
        await store.reserve(first, [charge(BUDGET, 700, limit=1_000), charge(RATE, 50)], HOLD)
        await store.reserve(second, [charge(BUDGET, 100, limit=1_000)], HOLD)
        ttl = {BUDGET: DAY, RATE: DAY}
        levels = await store.settle(first, {BUDGET: 240, RATE: 31}, ttl)
        assert levels == {BUDGET: Level(240, 100), RATE: Level(31, 0)}
        assert await store.levels([BUDGET, RATE]) == levels

    play(backend, body)


def test_a_charge_that_does_not_fit_refuses_the_whole_reservation(backend: StoreFactory) -> None:
    async def body(store: CounterStore, clock: FakeClock) -> None:
        await store.add_spent(TEAM, 900, DAY)
        charges = [charge(BUDGET, 500, limit=1_000), charge(TEAM, 200, limit=1_000)]
        charges.append(charge(RATE, 10))
        refusal = await store.reserve(rid(), charges, HOLD)
        assert refusal == Refusal(TEAM, limit=1_000, spent=900, reserved=0)
        levels = await store.levels([BUDGET, TEAM, RATE])
        assert levels == {BUDGET: Level(0, 0), TEAM: Level(900, 0), RATE: Level(0, 0)}

    play(backend, body)


def test_a_reservation_may_use_the_last_unit_of_a_limit(backend: StoreFactory) -> None:
    async def body(store: CounterStore, clock: FakeClock) -> None:
        assert await store.reserve(rid(), [charge(BUDGET, 600, limit=1_000)], HOLD) is None
        assert await store.reserve(rid(), [charge(BUDGET, 400, limit=1_000)], HOLD) is None
        refusal = await store.reserve(rid(), [charge(BUDGET, 1, limit=1_000)], HOLD)
        assert refusal == Refusal(BUDGET, 1_000, spent=0, reserved=1_000)

    play(backend, body)


def test_a_charge_without_a_limit_is_counted_but_never_refused(backend: StoreFactory) -> None:
    async def body(store: CounterStore, clock: FakeClock) -> None:
        for _ in range(3):
            assert await store.reserve(rid(), [charge(RATE, 2**40)], HOLD) is None
        assert await store.levels([RATE]) == {RATE: Level(0, 3 * 2**40)}

    play(backend, body)


def test_spend_added_without_a_reservation_counts_past_the_limit(backend: StoreFactory) -> None:
    async def body(store: CounterStore, clock: FakeClock) -> None:
        assert await store.add_spent(BUDGET, 1_200, DAY) == Level(1_200, 0)
        refusal = await store.reserve(rid(), [charge(BUDGET, 0, limit=1_000)], HOLD)
        assert refusal == Refusal(BUDGET, 1_000, spent=1_200, reserved=0)

    play(backend, body)


async def admit_and_settle(
    stores: list[CounterStore], per_store: int, limit: int, rng: random.Random
) -> tuple[int, int]:
    amount = 1_000_000
    ids = [[rid() for _ in range(per_store)] for _ in stores]
    replies = await asyncio.gather(
        *(
            store.reserve(reservation, [charge(BUDGET, amount, limit=limit)], HOLD)
            for store, batch in zip(stores, ids, strict=True)
            for reservation in batch
        )
    )
    admitted = [
        (store, reservation)
        for (store, batch) in zip(stores, ids, strict=True)
        for reservation in batch
    ]
    accepted = [pair for pair, reply in zip(admitted, replies, strict=True) if reply is None]
    actuals = [rng.randint(0, amount) for _ in accepted]
    await asyncio.gather(
        *(
            store.settle(reservation, {BUDGET: actual}, {BUDGET: DAY})
            for (store, reservation), actual in zip(accepted, actuals, strict=True)
        )
    )
    level = (await stores[0].levels([BUDGET]))[BUDGET]
    assert level == Level(sum(actuals), 0)
    return len(accepted), level.spent


def test_concurrent_reservations_never_pass_the_limit(backend: StoreFactory) -> None:
    async def body(store: CounterStore, clock: FakeClock) -> None:
        accepted, spent = await admit_and_settle([store], 200, 50_000_000, random.Random(7))
        assert accepted == 50
        assert spent <= 50_000_000

    play(backend, body)


@pytest.mark.redis
def test_two_replicas_sharing_redis_never_pass_the_limit(redis_space: RedisSpace) -> None:
    async def main() -> None:
        clock = FakeClock()
        replicas = [redis_space.store(clock) for _ in range(2)]  # two pools, like two replicas
        try:
            accepted, spent = await admit_and_settle(replicas, 100, 50_000_000, random.Random(8))
        finally:
            for replica in replicas:
                await replica.close()
        assert accepted == 50
        assert spent <= 50_000_000

    asyncio.run(main())


def test_settling_twice_releases_once(backend: StoreFactory) -> None:
    async def body(store: CounterStore, clock: FakeClock) -> None:
        first = rid()
        await store.reserve(first, [charge(BUDGET, 500, limit=1_000)], HOLD)
        await store.reserve(rid(), [charge(BUDGET, 300, limit=1_000)], HOLD)
        await store.settle(first, {BUDGET: 200}, {BUDGET: DAY})
        assert await store.settle(first, {}, {BUDGET: DAY}) == {}
        assert await store.levels([BUDGET]) == {BUDGET: Level(200, 300)}

    play(backend, body)


def test_settling_after_a_reclaim_still_adds_the_spend(backend: StoreFactory) -> None:
    async def body(store: CounterStore, clock: FakeClock) -> None:
        late = rid()
        await store.reserve(late, [charge(BUDGET, 500, limit=1_000), charge(RATE, 9)], 5.0)
        clock.advance(6.0)
        assert await store.reclaim() == 1
        assert await store.levels([BUDGET]) == {BUDGET: Level(0, 0)}
        levels = await store.settle(late, {BUDGET: 450}, {BUDGET: DAY})
        assert levels == {BUDGET: Level(450, 0)}

    play(backend, body)


def test_an_expired_reservation_is_reclaimed_and_frees_room_for_another(
    backend: StoreFactory,
) -> None:
    async def body(store: CounterStore, clock: FakeClock) -> None:
        assert await store.reserve(rid(), [charge(BUDGET, 1_000, limit=1_000)], 5.0) is None
        assert await store.reserve(rid(), [charge(BUDGET, 1, limit=1_000)], 5.0) is not None
        clock.advance(4.9)
        assert await store.reserve(rid(), [charge(BUDGET, 1, limit=1_000)], 5.0) is not None
        clock.advance(0.2)
        assert await store.reserve(rid(), [charge(BUDGET, 1_000, limit=1_000)], 5.0) is None
        assert await store.levels([BUDGET]) == {BUDGET: Level(0, 1_000)}

    play(backend, body)


def test_reclaim_releases_every_due_reservation_and_counts_them(backend: StoreFactory) -> None:
    async def body(store: CounterStore, clock: FakeClock) -> None:
        count = RECLAIM_BATCH * 8 + 40  # more than one reclaim batch of the Redis store
        for _ in range(count):
            await store.reserve(rid(), [charge(BUDGET, 3), charge(RATE, 0)], 5.0)
        await store.reserve(rid(), [charge(BUDGET, 1)], 50.0)
        clock.advance(10.0)
        assert await store.reclaim() == count
        assert await store.reclaim() == 0
        assert await store.levels([BUDGET, RATE]) == {BUDGET: Level(0, 1), RATE: Level(0, 0)}

    play(backend, body)


def test_seed_sets_spent_only_on_a_missing_key(backend: StoreFactory) -> None:
    async def body(store: CounterStore, clock: FakeClock) -> None:
        assert await store.seed(BUDGET, 4_000, DAY) is True
        assert await store.seed(BUDGET, 9_000, DAY) is False
        assert await store.levels([BUDGET]) == {BUDGET: Level(4_000, 0)}

    play(backend, body)


def test_seed_leaves_a_key_that_traffic_already_created(backend: StoreFactory) -> None:
    async def body(store: CounterStore, clock: FakeClock) -> None:
        await store.reserve(rid(), [charge(BUDGET, 70)], HOLD)
        assert await store.seed(BUDGET, 4_000, DAY) is False
        assert await store.levels([BUDGET]) == {BUDGET: Level(0, 70)}

    play(backend, body)


def test_unknown_keys_read_as_zero(backend: StoreFactory) -> None:
    async def body(store: CounterStore, clock: FakeClock) -> None:
        assert await store.levels(["budget:nobody:2026-11-01"]) == {
            "budget:nobody:2026-11-01": Level(0, 0)
        }
        assert await store.levels([]) == {}

    play(backend, body)


def test_reusing_an_open_reservation_id_is_an_error(backend: StoreFactory) -> None:
    async def body(store: CounterStore, clock: FakeClock) -> None:
        same = rid()
        await store.reserve(same, [charge(BUDGET, 5)], HOLD)
        with pytest.raises(ValueError, match="already open"):
            await store.reserve(same, [charge(BUDGET, 5)], HOLD)
        assert await store.levels([BUDGET]) == {BUDGET: Level(0, 5)}

    play(backend, body)


def test_a_key_twice_in_one_reservation_is_an_error(backend: StoreFactory) -> None:
    async def body(store: CounterStore, clock: FakeClock) -> None:
        with pytest.raises(ValueError, match="once"):
            await store.reserve(rid(), [charge(BUDGET, 5), charge(BUDGET, 6)], HOLD)

    play(backend, body)


def test_spend_on_a_key_without_a_ttl_is_an_error(backend: StoreFactory) -> None:
    async def body(store: CounterStore, clock: FakeClock) -> None:
        with pytest.raises(ValueError, match="ttl_s"):
            await store.settle(rid(), {BUDGET: 5}, {})
        with pytest.raises(ValueError, match="between 0"):
            await store.settle(rid(), {BUDGET: -5}, {BUDGET: DAY})

    play(backend, body)


@pytest.mark.parametrize(
    ("amount", "limit", "ttl_s"),
    [(-1, None, DAY), (1, -1, DAY), (2**53, None, DAY), (1, None, 0.0), (1, None, float("inf"))],
)
def test_a_charge_out_of_range_is_rejected_when_built(
    amount: int, limit: int | None, ttl_s: float
) -> None:
    with pytest.raises(ValueError, match=r"between|positive"):
        Charge(BUDGET, amount, limit, ttl_s)


def test_memory_counters_are_dropped_after_their_ttl() -> None:
    async def main() -> None:
        clock = FakeClock()
        store = MemoryCounters(clock)
        await store.add_spent("budget:b:2026-10-01", 5, 10.0)
        await store.reserve(rid(), [charge("rate:k:06:19", 1, ttl_s=10.0)], 2.0)
        clock.advance(10.5)
        assert store.counter_count() == 0
        assert await store.levels(["budget:b:2026-10-01"]) == {"budget:b:2026-10-01": Level(0, 0)}

    asyncio.run(main())


def test_a_memory_counter_holding_a_reservation_outlives_its_ttl() -> None:
    async def main() -> None:
        clock = FakeClock()
        store = MemoryCounters(clock)
        await store.reserve(rid(), [charge(RATE, 7, ttl_s=10.0)], 60.0)
        clock.advance(30.0)
        assert await store.levels([RATE]) == {RATE: Level(0, 7)}
        clock.advance(31.0)
        assert await store.levels([RATE]) == {RATE: Level(0, 0)}
        assert store.counter_count() == 0

    asyncio.run(main())


@pytest.mark.redis
def test_redis_counters_and_reservations_expire(redis_space: RedisSpace) -> None:
    reservation = rid()

    async def main() -> None:
        store = RedisCounters(redis_space.url, redis_space.namespace)
        try:
            await store.reserve(reservation, [charge(RATE, 7, ttl_s=10.0)], 60.0)
            await store.add_spent(BUDGET, 5, DAY)
            await store.seed(TEAM, 5, 20.0)
        finally:
            await store.close()

    asyncio.run(main())
    assert 59_000 < redis_space.pttl("counter:" + RATE) <= 60_000  # outlives the hold
    assert 59_000 < redis_space.pttl("resv:" + reservation) <= 60_000
    assert DAY * 1000 - 1_000 < redis_space.pttl("counter:" + BUDGET) <= DAY * 1000
    assert 19_000 < redis_space.pttl("counter:" + TEAM) <= 20_000


def test_an_unreachable_redis_raises_counter_store_unavailable() -> None:
    async def main() -> None:
        store = RedisCounters("redis://127.0.0.1:1/0", "test:finops:", timeout_s=0.5)
        try:
            with pytest.raises(CounterStoreUnavailable):
                await store.reserve(rid(), [charge(BUDGET, 1)], HOLD)
            with pytest.raises(CounterStoreUnavailable):
                await store.levels([BUDGET])
        finally:
            await store.close()

    asyncio.run(main())


LIMITS: dict[str, int | None] = {"a": 100, "b": 250, "c": None}

operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("reserve"),
            st.dictionaries(st.sampled_from(sorted(LIMITS)), st.integers(0, 120), min_size=1),
            st.sampled_from([1.0, 10.0, 30.0]),
        ),
        st.tuples(st.just("settle"), st.integers(0, 40), st.floats(0.0, 1.0)),
        st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0, 5.0, 20.0])),
        st.tuples(st.just("reclaim")),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(operations)
def test_memory_counters_keep_their_invariants(ops: list[tuple[object, ...]]) -> None:
    """Spent is the sum of settled actuals, reserved the sum of open unexpired reservations,
    and no accepted reservation takes a counter past its limit."""

    async def main() -> None:
        clock = FakeClock()
        store = MemoryCounters(clock)
        issued: list[tuple[str, dict[str, int]]] = []
        open_: dict[str, tuple[float, dict[str, int]]] = {}
        spent = dict.fromkeys(LIMITS, 0)

        def reserved() -> dict[str, int]:
            totals = dict.fromkeys(LIMITS, 0)
            for _, amounts in open_.values():
                for key, amount in amounts.items():
                    totals[key] += amount
            return totals

        def expire() -> None:
            for name in [n for n, (until, _) in open_.items() if until <= clock.now]:
                del open_[name]

        for op in ops:
            expire()
            if op[0] == "reserve":
                amounts, hold = op[1], op[2]
                assert isinstance(amounts, dict)
                assert isinstance(hold, float)
                held = reserved()
                fit = all(
                    (limit := LIMITS[key]) is None or spent[key] + held[key] + amount <= limit
                    for key, amount in amounts.items()
                )
                name = rid()
                charges = [Charge(key, amount, LIMITS[key], DAY) for key, amount in amounts.items()]
                result = await store.reserve(name, charges, hold)
                assert (result is None) == fit
                issued.append((name, amounts))
                if fit:
                    open_[name] = (clock.now + hold, amounts)
                    levels = await store.levels(list(amounts))
                    for key, level in levels.items():
                        limit = LIMITS[key]
                        assert limit is None or level.spent + level.reserved <= limit
            elif op[0] == "settle" and issued:
                index, fraction = op[1], op[2]
                assert isinstance(index, int)
                assert isinstance(fraction, float)
                name, amounts = issued[index % len(issued)]
                actual = {key: int(amount * fraction) for key, amount in amounts.items()}
                await store.settle(name, actual, dict.fromkeys(actual, DAY))
                open_.pop(name, None)
                for key, amount in actual.items():
                    spent[key] += amount
            elif op[0] == "advance":
                assert isinstance(op[1], float)
                clock.advance(op[1])
            elif op[0] == "reclaim":
                await store.reclaim()
            expire()
            held = reserved()
            expected = {key: Level(spent[key], held[key]) for key in LIMITS}
            assert await store.levels(list(LIMITS)) == expected

    asyncio.run(main())
