"""Budgets and rate limits: what admission plus settlement costs every model call.

A request touches 4 budgets (key, project, team, department) and 2 rate limits (tokens and
requests per minute): the gateway's `BudgetGuard` reserves the worst case on all 6 counters
atomically, then settles the actual amounts, exactly as on the request path (inline on the
memory store, awaited on Redis). Measured per request, sequentially, with `MemoryCounters` and
with `RedisCounters` on 127.0.0.1:6379 (skipped, saying why, when Redis is down); for Redis also
the throughput of 32 concurrent requests, as replicas would drive it.

Environment: BENCH_FINOPS_REQUESTS (20000), BENCH_FINOPS_WARMUP (2000).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import redis

from capstan.clock import utcnow
from capstan.finops.budget_rules import BudgetIndex, BudgetRule, Caller
from capstan.finops.counters import CounterStore
from capstan.finops.guard import BudgetGuard
from capstan.finops.memory_counters import MemoryCounters
from capstan.finops.ratelimit_rules import RateCap, RateLimitIndex, RateLimitRule
from capstan.finops.redis_counters import RedisCounters
from capstan.identity.scope import ScopePath

REDIS_URL = "redis://127.0.0.1:6379/0"
REQUESTS = int(os.environ.get("BENCH_FINOPS_REQUESTS", "20000"))
WARMUP = int(os.environ.get("BENCH_FINOPS_WARMUP", "2000"))
CONCURRENCY = 32
TARGET_P50_US = {"memory": 100.0, "redis": 1000.0}

ORG, DEPARTMENT, TEAM, PROJECT, KEY = (uuid.uuid4() for _ in range(5))
CALLER = Caller(ScopePath(ORG, DEPARTMENT, TEAM, PROJECT), key_id=KEY)
WORST_USD, WORST_TOKENS = 50_000, 4_096
ACTUAL_USD, ACTUAL_TOKENS = 12_345, 1_234


def scopes() -> tuple[list[BudgetRule], tuple[RateCap, ...]]:
    """The caller's 4 budgets and 2 rate caps, found through the gateway's indexes."""
    budgets = BudgetIndex.of(
        BudgetRule(uuid.uuid4(), kind, kind, target, None, "monthly", 10**15, "block")  # type: ignore[arg-type]
        for kind, target in (
            ("key", KEY),
            ("project", PROJECT),
            ("team", TEAM),
            ("department", DEPARTMENT),
        )
    )
    rates = RateLimitIndex.of(
        [RateLimitRule(uuid.uuid4(), "tpm", "key", KEY, None, "minute", 10**9, 10**12)]
    )
    caps = rates.for_call(CALLER, "gpt-4o-mini")
    assert len(caps) == 2
    return budgets.for_caller(CALLER), caps


SCOPES = scopes()


async def one_request(guard: BudgetGuard, request_id: str) -> None:
    rules, caps = SCOPES
    at = utcnow()
    if guard.inline is not None:
        hold = guard.admit_inline(rules, WORST_USD, request_id, at, caps, WORST_TOKENS)
        assert hold is not None
        guard.settle_inline(hold, ACTUAL_USD, ACTUAL_TOKENS)
        return
    hold = await guard.admit(rules, WORST_USD, request_id, at, caps, WORST_TOKENS)
    assert hold is not None
    await guard.settle(hold, ACTUAL_USD, ACTUAL_TOKENS)


async def latencies(store: CounterStore, count: int, warmup: int) -> list[float]:
    """Per-request µs of admission + settlement, one request at a time."""
    guard = BudgetGuard(store, lambda _: None)
    for i in range(warmup):
        await one_request(guard, f"warm-{i}")
    timings: list[float] = []
    clock = time.perf_counter_ns
    for i in range(count):
        started = clock()
        await one_request(guard, f"req-{i}")
        timings.append((clock() - started) / 1000)
    return timings


async def throughput(store: CounterStore, count: int) -> float:
    guard = BudgetGuard(store, lambda _: None)

    async def worker(offset: int) -> None:
        for i in range(offset, count, CONCURRENCY):
            await one_request(guard, f"conc-{i}")

    started = time.perf_counter()
    await asyncio.gather(*(worker(offset) for offset in range(CONCURRENCY)))
    return count / (time.perf_counter() - started)


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def row(name: str, timings: list[float], note: str = "") -> None:
    timings = sorted(timings)
    p50, p99 = percentile(timings, 0.50), percentile(timings, 0.99)
    print(f"{name:<40} {p50:>10,.1f} {p99:>10,.1f}   {note}")


async def bench_memory() -> None:
    store = MemoryCounters()
    timings = await latencies(store, REQUESTS, WARMUP)
    row(
        "memory: admit + settle, 4 budgets + 2 caps",
        timings,
        f"target p50 ≤ {TARGET_P50_US['memory']:.0f}",
    )


async def bench_redis(namespace: str) -> None:
    store = RedisCounters(REDIS_URL, namespace)
    try:
        timings = await latencies(store, REQUESTS, min(WARMUP, 500))
        row(
            "redis: admit + settle, 4 budgets + 2 caps",
            timings,
            f"target p50 ≤ {TARGET_P50_US['redis']:.0f}",
        )
        rate = await throughput(store, max(1000, REQUESTS // 4))
        print(f"{'redis: ' + str(CONCURRENCY) + ' concurrent requests':<40} {rate:>10,.0f} req/s")
    finally:
        await store.close()


def redis_unreachable() -> str | None:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        return str(exc)
    finally:
        client.close()
    return None


def drop_namespace(namespace: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        for key in client.scan_iter(match=namespace + "*", count=1000):
            client.delete(key)
    finally:
        client.close()


def run() -> None:
    print("== finops: budgets and rate limits ==")
    print(f"{'per request (µs)':<40} {'p50':>10} {'p99':>10}   ({REQUESTS:,} requests)")
    asyncio.run(bench_memory())
    problem = redis_unreachable()
    if problem is not None:
        print(f"Redis at {REDIS_URL} not reachable ({problem}); skipping its benchmark")
        return
    namespace = f"bench:finops:{uuid.uuid4().hex}:"
    try:
        asyncio.run(bench_redis(namespace))
    finally:
        drop_namespace(namespace)


if __name__ == "__main__":
    run()
