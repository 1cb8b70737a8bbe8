"""Per-deployment concurrency limits: a cap, a bounded FIFO queue, nothing leaked."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capstan.gateway.limits import ConcurrencyLimit, DeploymentLimits, Saturated


@pytest.fixture(autouse=True)
def _no_faults() -> None:
    """Plain objects under test: no gateway to start or clean after (overrides the package's)."""


async def settle() -> None:
    """Let every ready task run until each is blocked again."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_below_the_limit_acquire_is_immediate() -> None:
    async def scenario() -> None:
        limit = ConcurrencyLimit(2, queue=0)
        await limit.acquire()
        await limit.acquire()
        assert (limit.in_flight, limit.waiting) == (2, 0)

    asyncio.run(scenario())


def test_at_the_limit_callers_wait_in_arrival_order_and_proceed_on_release() -> None:
    async def scenario() -> None:
        limit = ConcurrencyLimit(1, queue=3)
        await limit.acquire()
        order: list[int] = []

        async def call(number: int) -> None:
            async with limit:
                order.append(number)

        tasks = [asyncio.create_task(call(n)) for n in range(3)]
        await settle()
        assert (order, limit.waiting) == ([], 3)
        limit.release()
        await asyncio.gather(*tasks)
        assert order == [0, 1, 2]
        assert (limit.in_flight, limit.waiting) == (0, 0)

    asyncio.run(scenario())


def test_a_full_queue_raises_saturated_at_once() -> None:
    async def scenario() -> None:
        limit = ConcurrencyLimit(1, queue=1)
        await limit.acquire()
        waiter = asyncio.create_task(limit.acquire())
        await settle()
        with pytest.raises(Saturated):
            await limit.acquire()
        limit.release()
        await waiter
        assert (limit.in_flight, limit.waiting) == (1, 0)

    asyncio.run(scenario())


def test_cancelling_a_waiter_frees_its_place_in_the_queue() -> None:
    async def scenario() -> None:
        limit = ConcurrencyLimit(1, queue=1)
        await limit.acquire()
        waiter = asyncio.create_task(limit.acquire())
        await settle()
        waiter.cancel()
        await settle()
        assert (limit.in_flight, limit.waiting) == (1, 0)
        successor = asyncio.create_task(limit.acquire())  # the freed place can be taken
        await settle()
        limit.release()
        await successor
        limit.release()
        assert (limit.in_flight, limit.waiting) == (0, 0)

    asyncio.run(scenario())


def test_a_waiter_cancelled_just_after_being_handed_the_slot_passes_it_on() -> None:
    async def scenario() -> None:
        limit = ConcurrencyLimit(1, queue=2)
        await limit.acquire()
        first = asyncio.create_task(limit.acquire())
        second = asyncio.create_task(limit.acquire())
        await settle()
        limit.release()  # hands the slot to `first`, which has not resumed yet
        first.cancel()
        await settle()
        assert second.done()
        assert (limit.in_flight, limit.waiting) == (1, 0)

    asyncio.run(scenario())


def test_an_unchanged_limit_is_the_same_object_and_a_changed_one_is_new() -> None:
    limits = DeploymentLimits(queue_factor=0.5)
    first = limits.for_deployment("a", 4)
    assert first is not None
    assert limits.for_deployment("a", 4) is first
    assert first.queue == 2
    changed = limits.for_deployment("a", 3)
    assert changed is not None
    assert changed is not first
    assert changed.queue == 2  # ceil(3 * 0.5)


def test_in_flight_calls_on_a_replaced_limit_release_into_it() -> None:
    async def scenario() -> None:
        limits = DeploymentLimits()
        old = limits.for_deployment("a", 1)
        assert old is not None
        await old.acquire()
        new = limits.for_deployment("a", 2)
        assert new is not None
        old.release()
        assert (old.in_flight, new.in_flight) == (0, 0)

    asyncio.run(scenario())


def test_no_limit_means_none_and_is_left_out_of_the_snapshot() -> None:
    limits = DeploymentLimits()
    limits.for_deployment("a", 2)
    assert limits.for_deployment("b", None) is None
    assert limits.for_deployment("a", None) is None
    assert limits.snapshot() == {}


def test_snapshot_reports_in_flight_and_waiting() -> None:
    async def scenario() -> None:
        limits = DeploymentLimits()
        limit = limits.for_deployment("a", 1)
        assert limit is not None
        await limit.acquire()
        waiter = asyncio.create_task(limit.acquire())
        await settle()
        assert limits.snapshot() == {"a": (1, 1)}
        waiter.cancel()
        await settle()

    asyncio.run(scenario())


CALL = st.tuples(
    st.integers(min_value=0, max_value=3),  # event-loop turns before trying
    st.integers(min_value=0, max_value=4),  # turns holding the slot
    st.booleans(),  # cancelled while it waits or holds
)


@settings(max_examples=150, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=4),
    queue=st.integers(min_value=0, max_value=4),
    calls=st.lists(CALL, min_size=1, max_size=25),
)
def test_in_flight_never_exceeds_the_limit_and_nothing_leaks(
    limit: int, queue: int, calls: list[tuple[int, int, bool]]
) -> None:
    async def scenario() -> None:
        gate = ConcurrencyLimit(limit, queue)
        holding = 0

        async def call(delay: int, hold: int) -> None:
            nonlocal holding
            for _ in range(delay):
                await asyncio.sleep(0)
            try:
                async with gate:
                    holding += 1
                    assert holding <= limit
                    assert gate.in_flight <= limit
                    try:
                        for _ in range(hold):
                            await asyncio.sleep(0)
                    finally:
                        holding -= 1
            except Saturated:
                assert gate.waiting == queue

        tasks = [asyncio.create_task(call(delay, hold)) for delay, hold, _ in calls]
        for task, (_, _, cancel) in zip(tasks, calls, strict=True):
            await asyncio.sleep(0)
            if cancel:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert (gate.in_flight, gate.waiting) == (0, 0)

    asyncio.run(scenario())
