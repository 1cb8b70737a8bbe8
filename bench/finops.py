"""Budget counters: what admission (reserve) plus settlement costs every model call.

A request touches 4 budget counters (key, project, team, department) and 2 rate-limit counters
(tokens and requests per minute): reserve the worst case on all 6 atomically, then settle the
actual amounts. Measured per request, sequentially, with `MemoryCounters` and with
`RedisCounters` on 127.0.0.1:6379 (skipped, saying why, when Redis is down); for Redis also the
throughput of 32 concurrent requests, as replicas would drive it.

Environment: BENCH_FINOPS_REQUESTS (20000), BENCH_FINOPS_WARMUP (2000).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import redis

from capstan.finops.counters import Charge, CounterStore
from capstan.finops.memory_counters import MemoryCounters
from capstan.finops.redis_counters import RedisCounters

REDIS_URL = "redis://127.0.0.1:6379/0"
REQUESTS = int(os.environ.get("BENCH_FINOPS_REQUESTS", "20000"))
WARMUP = int(os.environ.get("BENCH_FINOPS_WARMUP", "2000"))
CONCURRENCY = 32
TARGET_P50_US = {"memory": 100.0, "redis": 1000.0}

HOLD_S = 3900.0
TTL_S = 40 * 86_400.0
BUDGETS = [f"budget:0196f1a2-0000-7000-8000-00000000000{i}:2026-11-01" for i in range(4)]
RATES = ["rate:key-1:tokens:2026-11-25T06:19", "rate:key-1:requests:2026-11-25T06:19"]
TTLS = dict.fromkeys(BUDGETS + RATES, TTL_S)


def charges() -> list[Charge]:
    """What the gateway builds for each request: the worst case on every counter it touches."""
    budget = [Charge(key, 50_000, 10**15, TTL_S) for key in BUDGETS]
    return [*budget, Charge(RATES[0], 4_096, 10**12, 120.0), Charge(RATES[1], 1, 10**9, 120.0)]


ACTUAL = {**dict.fromkeys(BUDGETS, 12_345), RATES[0]: 1_234, RATES[1]: 1}


async def one_request(store: CounterStore, request_id: str) -> None:
    refusal = await store.reserve(request_id, charges(), HOLD_S)
    assert refusal is None, refusal
    await store.settle(request_id, ACTUAL, TTLS)


async def latencies(store: CounterStore, count: int, warmup: int) -> list[float]:
    """Per-request µs of reserve + settle, one request at a time."""
    for i in range(warmup):
        await one_request(store, f"warm-{i}")
    timings: list[float] = []
    clock = time.perf_counter_ns
    for i in range(count):
        started = clock()
        await one_request(store, f"req-{i}")
        timings.append((clock() - started) / 1000)
    return timings


async def throughput(store: CounterStore, count: int) -> float:
    async def worker(offset: int) -> None:
        for i in range(offset, count, CONCURRENCY):
            await one_request(store, f"conc-{i}")

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
    row("memory: reserve + settle, 6 keys", timings, f"target p50 ≤ {TARGET_P50_US['memory']:.0f}")


async def bench_redis(namespace: str) -> None:
    store = RedisCounters(REDIS_URL, namespace)
    try:
        timings = await latencies(store, REQUESTS, min(WARMUP, 500))
        row(
            "redis: reserve + settle, 6 keys", timings, f"target p50 ≤ {TARGET_P50_US['redis']:.0f}"
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
    print("== finops counters ==")
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
