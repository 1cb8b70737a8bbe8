"""Circuit breakers: when they open, how they probe, and how replicas share them through Redis."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from capstan.gateway.breakers import (
    BreakerBoard,
    BreakerNews,
    BreakerPolicy,
    CircuitBreaker,
    RedisBreakerSync,
)
from tests.databases import require_redis
from tests.servers import free_port

POLICY = BreakerPolicy(failures=3, error_ratio=0.5, min_calls=10, window_s=10.0, cooldown_s=5.0)


@pytest.fixture(autouse=True)
def _no_faults() -> None:
    """Plain objects under test: no gateway to start or clean after (overrides the package's)."""


@dataclass
class FakeClock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


def opened(policy: BreakerPolicy = POLICY, at: float = 0.0) -> CircuitBreaker:
    breaker = CircuitBreaker(policy)
    for _ in range(policy.failures):
        assert breaker.allow(at)
        breaker.record_failure(at)
    assert breaker.state(at) == "open"
    return breaker


def half_open(policy: BreakerPolicy = POLICY) -> tuple[CircuitBreaker, float]:
    breaker = opened(policy)
    return breaker, policy.cooldown_s


# -- one breaker ---------------------------------------------------------------------------------


def test_opens_after_n_consecutive_failures() -> None:
    breaker = CircuitBreaker(POLICY)
    for _ in range(POLICY.failures - 1):
        breaker.record_failure(0.0)
    assert breaker.state(0.0) == "closed"
    assert breaker.record_failure(0.0) == "opened"
    assert breaker.state(0.0) == "open"


def test_a_success_breaks_the_run_of_consecutive_failures() -> None:
    breaker = CircuitBreaker(POLICY)
    for _ in range(POLICY.failures - 1):
        breaker.record_failure(0.0)
    breaker.record_success(0.0)
    for _ in range(POLICY.failures - 1):
        breaker.record_failure(0.0)
    assert breaker.state(0.0) == "closed"


def test_opens_on_error_ratio_once_min_calls_seen() -> None:
    breaker = CircuitBreaker(POLICY)
    outcomes = [breaker.record_success, breaker.record_failure] * (POLICY.min_calls // 2)
    transitions = [record(1.0) for record in outcomes]
    assert transitions[-1] == "opened"
    assert transitions[:-1] == [None] * (len(outcomes) - 1)


def test_stays_closed_below_min_calls_whatever_the_ratio() -> None:
    breaker = CircuitBreaker(POLICY)
    for _ in range(POLICY.min_calls // 2 - 1):
        breaker.record_success(1.0)
        breaker.record_failure(1.0)
    assert breaker.state(1.0) == "closed"


def test_calls_older_than_the_window_no_longer_count() -> None:
    breaker = CircuitBreaker(POLICY)
    for _ in range(3):  # 9 calls, 6 failures, never 3 in a row: one call short of min_calls
        breaker.record_failure(0.0)
        breaker.record_failure(0.0)
        breaker.record_success(0.0)
    assert breaker.state(0.0) == "closed"
    assert breaker.record_failure(POLICY.window_s + 1.0) is None  # alone in its window


def test_calls_inside_the_window_count_together() -> None:
    breaker = CircuitBreaker(POLICY)
    for _ in range(3):
        breaker.record_failure(0.0)
        breaker.record_failure(0.0)
        breaker.record_success(0.0)
    assert breaker.record_failure(POLICY.window_s - 1.0) == "opened"


def test_refuses_while_open() -> None:
    breaker = opened()
    assert not breaker.allow(POLICY.cooldown_s - 0.001)
    assert breaker.refuses(POLICY.cooldown_s - 0.001)


def test_half_opens_after_cooldown_and_allows_exactly_one_probe() -> None:
    breaker, now = half_open()
    assert breaker.state(now) == "half_open"
    assert breaker.allow(now)
    assert not breaker.allow(now)
    assert not breaker.allow(now + 1.0)


def test_probe_success_closes() -> None:
    breaker, now = half_open()
    assert breaker.allow(now)
    assert breaker.record_success(now) == "closed"
    assert breaker.state(now) == "closed"
    assert all(breaker.allow(now) for _ in range(3))


def test_closing_resets_the_failure_counts() -> None:
    breaker, now = half_open()
    breaker.allow(now)
    breaker.record_success(now)
    for _ in range(POLICY.failures - 1):
        breaker.record_failure(now)
    assert breaker.state(now) == "closed"


def test_probe_failure_reopens_for_another_cooldown() -> None:
    breaker, now = half_open()
    assert breaker.allow(now)
    assert breaker.record_failure(now) == "opened"
    assert breaker.state(now + POLICY.cooldown_s - 0.001) == "open"
    assert breaker.state(now + POLICY.cooldown_s) == "half_open"


def test_release_frees_the_probe() -> None:
    breaker, now = half_open()
    assert breaker.allow(now)
    breaker.record_release(now)
    assert breaker.state(now) == "half_open"
    assert breaker.allow(now)


def test_a_call_admitted_before_the_probe_ending_does_not_free_the_probe_slot() -> None:
    breaker = CircuitBreaker(POLICY)
    assert breaker.allow(0.0)  # a long stream, still running when the breaker half-opens
    for _ in range(POLICY.failures):
        assert breaker.allow(0.0)
        breaker.record_failure(0.0)
    now = POLICY.cooldown_s
    assert breaker.allow(now)  # the probe
    breaker.record_release(now)  # the stream ends: it says nothing of the probe
    assert not breaker.allow(now)
    breaker.record_release(now)  # now the probe ends
    assert breaker.allow(now)


def test_a_probe_never_heard_of_again_is_replaced_after_probe_timeout() -> None:
    breaker, now = half_open()
    assert breaker.allow(now)
    assert not breaker.allow(now + POLICY.probe_timeout_s - 0.001)
    assert breaker.allow(now + POLICY.probe_timeout_s)


def test_a_timed_out_probe_ending_late_does_not_free_its_successors_slot() -> None:
    breaker, now = half_open()
    assert breaker.allow(now)  # the first probe, which hangs
    later = now + POLICY.probe_timeout_s
    assert breaker.allow(later)  # its successor
    breaker.record_release(later)  # the first one ends at last
    assert not breaker.allow(later)


def test_refuses_does_not_take_the_probe() -> None:
    breaker, now = half_open()
    assert not breaker.refuses(now)
    assert not breaker.refuses(now)
    assert breaker.allow(now)
    assert breaker.refuses(now)


def test_a_late_failure_while_open_does_not_extend_the_cooldown() -> None:
    breaker = opened()
    assert breaker.record_failure(POLICY.cooldown_s - 1.0) is None
    assert breaker.state(POLICY.cooldown_s) == "half_open"


def test_retry_in_is_the_time_left_in_the_cooldown() -> None:
    breaker = opened()
    assert breaker.retry_in(1.0) == pytest.approx(POLICY.cooldown_s - 1.0)
    assert breaker.retry_in(POLICY.cooldown_s) == 0.0
    breaker.allow(POLICY.cooldown_s)
    assert 0.0 < breaker.retry_in(POLICY.cooldown_s) <= 1.0  # probe out: ask again soon


def test_force_open_and_force_close_apply_another_replicas_view() -> None:
    breaker = CircuitBreaker(POLICY)
    breaker.force_open(until=50.0)
    assert breaker.state(49.0) == "open"
    assert breaker.state(50.0) == "half_open"
    breaker.force_close()
    assert breaker.state(50.0) == "closed"


def test_force_open_never_shortens_a_longer_local_cooldown() -> None:
    breaker = opened()
    breaker.force_open(until=1.0)
    assert breaker.state(POLICY.cooldown_s - 0.001) == "open"


def test_a_policy_that_cannot_work_is_refused() -> None:
    with pytest.raises(ValueError, match="error_ratio"):
        BreakerPolicy(error_ratio=0.0)
    with pytest.raises(ValueError, match="failures"):
        BreakerPolicy(failures=0)


# -- the board -----------------------------------------------------------------------------------


def test_board_is_open_does_not_take_the_probe() -> None:
    clock = FakeClock()
    board = BreakerBoard(POLICY, clock=clock)
    for _ in range(POLICY.failures):
        board.allow("a")
        board.failure("a")
    assert board.is_open("a")
    clock.now += POLICY.cooldown_s
    assert not board.is_open("a")
    assert not board.is_open("a")
    assert board.allow("a")
    assert board.is_open("a")
    board.release("a")
    assert not board.is_open("a")


def test_board_retry_in_is_the_soonest_of_the_deployments() -> None:
    clock = FakeClock()
    board = BreakerBoard(POLICY, clock=clock)
    for _ in range(POLICY.failures):
        board.failure("a")
    clock.now += 2.0
    for _ in range(POLICY.failures):
        board.failure("b")
    clock.now += 1.0
    assert board.retry_in(["a", "b"]) == pytest.approx(POLICY.cooldown_s - 3.0)
    assert board.retry_in(["a", "unknown"]) == 0.0
    assert board.states() == {"a": "open", "b": "open"}


def test_an_unknown_deployment_is_not_open() -> None:
    board = BreakerBoard(POLICY, clock=FakeClock())
    assert not board.is_open("never-called")
    assert board.states() == {}


class RecordingSync(RedisBreakerSync):
    """Keeps what the board announces instead of sending it."""

    def __init__(self) -> None:
        super().__init__("redis://unused")
        self.told: list[BreakerNews] = []

    def announce(self, news: BreakerNews) -> None:
        self.told.append(news)


def test_board_announces_opens_and_closes_but_not_remote_news() -> None:
    clock = FakeClock()
    sync = RecordingSync()
    board = BreakerBoard(POLICY, clock=clock, shared=sync)
    before = time.time()
    for _ in range(POLICY.failures):
        board.failure("a")
    board.apply(BreakerNews("b", "open", time.time() + 30.0, origin="another"))
    clock.now += POLICY.cooldown_s
    assert board.allow("a")
    board.success("a")
    assert [(n.deployment, n.state, n.origin) for n in sync.told] == [
        ("a", "open", board.origin),
        ("a", "closed", board.origin),
    ]
    until = sync.told[0].until
    assert until is not None
    assert before + POLICY.cooldown_s - 1.0 < until < time.time() + POLICY.cooldown_s + 1.0


def test_board_applies_others_news_and_ignores_its_own() -> None:
    board = BreakerBoard(POLICY, clock=FakeClock())
    board.apply(BreakerNews("a", "open", time.time() + 10.0, origin=board.origin))
    assert not board.is_open("a")
    board.apply(BreakerNews("a", "open", time.time() + 10.0, origin="another"))
    assert board.is_open("a")
    assert board.retry_in(["a"]) == pytest.approx(10.0, abs=0.5)
    board.apply(BreakerNews("a", "closed", origin="another"))
    assert not board.is_open("a")
    board.apply(BreakerNews("b", "open", time.time() - 1.0, origin="another"))  # already over
    assert not board.is_open("b")


# -- property ------------------------------------------------------------------------------------

PROPERTY_POLICY = BreakerPolicy(
    failures=2, error_ratio=0.5, min_calls=4, window_s=5.0, cooldown_s=2.0, probe_timeout_s=4.0
)
STEP = st.one_of(
    st.tuples(st.just("start"), st.just(0), st.just(0.0)),
    st.tuples(st.sampled_from(["success", "failure", "release"]), st.integers(0, 3), st.just(0.0)),
    # Steps around the cooldown (2 s) and the probe timeout (4 s), so both are crossed often.
    st.tuples(st.just("tick"), st.just(0), st.sampled_from([0.0, 0.5, 1.0, 2.5, 4.5])),
)


@settings(max_examples=500, deadline=None)
@given(steps=st.lists(STEP, min_size=20, max_size=100))
def test_property_one_probe_per_half_open_three_states_and_no_open_without_failure(
    steps: list[tuple[str, int, float]],
) -> None:
    breaker = CircuitBreaker(PROPERTY_POLICY)
    now = 0.0
    failures = 0
    period = 0  # counts the half-open periods
    previous = breaker.state(now)
    outstanding: list[tuple[int | None, float]] = []  # (half-open period if a probe, admitted at)
    for action, index, dt in steps:
        if action == "tick":
            now += dt
        elif action == "start":
            probing = breaker.state(now) == "half_open"
            if breaker.allow(now):
                outstanding.append((period if probing else None, now))
        elif outstanding:
            outstanding.pop(index % len(outstanding))
            if action == "success":
                breaker.record_success(now)
            elif action == "failure":
                failures += 1
                breaker.record_failure(now)
            else:
                breaker.record_release(now)
        state = breaker.state(now)
        assert state in ("closed", "open", "half_open")
        assert state == "closed" or failures > 0
        if state == "half_open" and previous != "half_open":
            period += 1
        previous = state
        if state == "half_open":
            live_probes = [
                admitted
                for probe_period, admitted in outstanding
                if probe_period == period and now - admitted < PROPERTY_POLICY.probe_timeout_s
            ]
            assert len(live_probes) <= 1


# -- Redis: replicas share their breakers --------------------------------------------------------


@dataclass
class RedisSpace:
    """A Redis namespace of this test's own, so parallel tests never meet."""

    url: str
    namespace: str

    @property
    def prefix(self) -> str:
        return self.namespace + "breaker:"

    def sync(self) -> RedisBreakerSync:
        return RedisBreakerSync(self.url, namespace=self.namespace)

    def keys(self) -> list[bytes]:
        client = redis.Redis.from_url(self.url)
        try:
            return list(client.scan_iter(match=self.prefix + "*"))
        finally:
            client.close()


@pytest.fixture
def redis_space() -> Iterator[RedisSpace]:
    url = require_redis()
    tag = uuid.uuid4().hex
    space = RedisSpace(url, f"test:{tag}:")
    yield space
    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(match=space.prefix + "*"):
            client.delete(key)
    finally:
        client.close()


SHARED = BreakerPolicy(failures=1, cooldown_s=30.0)


async def eventually(predicate: Callable[[], bool], within: float = 1.0) -> bool:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


@pytest.mark.redis
def test_an_open_on_one_replica_is_seen_on_another_within_a_second(
    redis_space: RedisSpace,
) -> None:
    async def scenario() -> None:
        a = BreakerBoard(SHARED, shared=redis_space.sync())
        b = BreakerBoard(SHARED, shared=redis_space.sync())
        await a.start()
        await b.start()
        try:
            a.failure("gpt@x")
            assert a.is_open("gpt@x")
            assert await eventually(lambda: b.is_open("gpt@x"))
            assert b.retry_in(["gpt@x"]) == pytest.approx(SHARED.cooldown_s, abs=1.5)
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(scenario())


@pytest.mark.redis
def test_a_close_on_one_replica_is_seen_on_another(redis_space: RedisSpace) -> None:
    async def scenario() -> None:
        policy = BreakerPolicy(failures=1, cooldown_s=0.3)
        a = BreakerBoard(policy, shared=redis_space.sync())
        b = BreakerBoard(policy, shared=redis_space.sync())
        await a.start()
        await b.start()
        try:
            a.failure("gpt@x")
            assert await eventually(lambda: b.is_open("gpt@x"))
            assert await eventually(lambda: a.states()["gpt@x"] == "half_open")
            assert a.allow("gpt@x")
            a.success("gpt@x")
            assert b.states()["gpt@x"] != "closed"
            assert await eventually(lambda: b.states()["gpt@x"] == "closed")
            assert await eventually(lambda: redis_space.keys() == [])
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(scenario())


@pytest.mark.redis
def test_a_replica_started_later_sees_a_breaker_already_open(redis_space: RedisSpace) -> None:
    async def scenario() -> None:
        a = BreakerBoard(SHARED, shared=redis_space.sync())
        await a.start()
        try:
            a.failure("gpt@x")
            assert await eventually(lambda: len(redis_space.keys()) == 1)
            late = BreakerBoard(SHARED, shared=redis_space.sync())
            await late.start()
            try:
                assert late.is_open("gpt@x")
            finally:
                await late.stop()
        finally:
            await a.stop()

    asyncio.run(scenario())


def test_without_redis_the_board_works_locally_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> float:
        sync = RedisBreakerSync(f"redis://127.0.0.1:{free_port()}/0", ready_timeout=2.0)
        board = BreakerBoard(SHARED, shared=sync)
        started = time.monotonic()
        await board.start()
        took = time.monotonic() - started
        try:
            board.failure("gpt@x")
            assert board.is_open("gpt@x")
            await asyncio.sleep(1.3)  # the writer failed, and the listener retried
        finally:
            await board.stop()
        return took

    with caplog.at_level(logging.WARNING, logger="capstan.gateway.breakers"):
        took = asyncio.run(scenario())
    assert took < 1.0
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "unreachable" in warnings[0].getMessage()
