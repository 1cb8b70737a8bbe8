"""Counters in Redis, shared by every gateway replica.

Each counter is a hash `<namespace>counter:<key>` with fields `spent` and `reserved`, expiring
(PEXPIRE) when its period is over; each open reservation is a hash `<namespace>resv:<id>`
(counter key → amount held) plus its member in the sorted set `<namespace>resv-due`, scored by
the hold's end in milliseconds. Every operation is one Lua script, so it is atomic: the reserve
script reclaims a few due reservations, checks every limit, then applies, and two replicas can
never both pass a limit. Times come from the clock given to `RedisCounters`, passed to the
scripts as arguments, so tests can move time; counter lifetimes are Redis's own PEXPIREs.

Reclaiming is lazy: each reserve first releases at most `RECLAIM_BATCH` due reservations, and
`reclaim()` (run periodically by the gateway) releases the rest. Until then a due reservation
still counts in `reserved`: a limit check may refuse a little early, never late.

The scripts touch keys they are not given in KEYS (the reservations they reclaim, and the
counters those hold), which works on a single Redis or a replicated primary but not on Redis
Cluster, where every key a script touches must be declared and live in one slot.

Scripts are not retried by the client: a reserve or settle whose reply was lost may have run,
and running it again would reserve or spend twice. Any Redis failure (unreachable, timed out,
no pooled connection free in time, or an error reply such as READONLY or OOM) raises
`CounterStoreUnavailable`, with the Redis exception as its cause.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from capstan.finops.counters import (
    Charge,
    CounterStoreUnavailable,
    Level,
    Refusal,
    amounts_by_key,
    check_amount,
    check_hold,
    check_settlement,
    check_ttl,
)

__all__ = ["RedisCounters"]

RECLAIM_BATCH = 32  # reclaimed by each reserve at most, so one request never pays for many

_PRELUDE = """
local function extend(key, ms)
  -- A counter's expiry only moves later: it must outlive every reservation holding money on it.
  local left = redis.call('PTTL', key)
  if left < ms then redis.call('PEXPIRE', key, ms) end
end

local function release(ns, id)
  local resv = ns .. 'resv:' .. id
  local held = redis.call('HGETALL', resv)
  redis.call('DEL', resv)
  redis.call('ZREM', ns .. 'resv-due', id)
  for i = 1, #held, 2 do
    local counter = ns .. 'counter:' .. held[i]
    -- skipping zeros: -0 would reach Redis as "-0", which HINCRBY rejects
    if held[i + 1] ~= '0' and redis.call('EXISTS', counter) == 1 then
      -- never below zero, even if the counter was evicted and recreated meanwhile
      if redis.call('HINCRBY', counter, 'reserved', '-' .. held[i + 1]) < 0 then
        redis.call('HSET', counter, 'reserved', 0)
      end
    end
  end
  return held
end

local function reclaim_due(ns, now, batch)
  local due = redis.call('ZRANGEBYSCORE', ns .. 'resv-due', '-inf', now, 'LIMIT', 0, batch)
  for _, id in ipairs(due) do release(ns, id) end
  return #due
end

local function level(key)
  local v = redis.call('HMGET', key, 'spent', 'reserved')
  return tonumber(v[1]) or 0, tonumber(v[2]) or 0
end
"""

# KEYS: resv, due, counter…  ARGV: now_ms, hold_ms, batch, ns, id, then per counter: key,
# amount, limit (-1: none), ttl_ms. Returns {0, used…} reserved (each limited counter's spent +
# reserved after it, -1 for the others), {-1} id open, {i, spent, reserved} refused.
_RESERVE = (
    _PRELUDE
    + """
local now, hold, ns, id = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[4], ARGV[5]
reclaim_due(ns, now, tonumber(ARGV[3]))
if redis.call('EXISTS', KEYS[1]) == 1 then return {-1} end
local n = #KEYS - 2
local out = {0}
for i = 1, n do
  local limit = tonumber(ARGV[4 + 4 * i])
  out[i + 1] = -1
  if limit >= 0 then
    local spent, reserved = level(KEYS[i + 2])
    local after = spent + reserved + tonumber(ARGV[3 + 4 * i])
    if after > limit then return {i, spent, reserved} end
    out[i + 1] = after
  end
end
if n == 0 then return out end
local longest = hold
for i = 1, n do
  local amount, keep = tonumber(ARGV[3 + 4 * i]), math.max(tonumber(ARGV[5 + 4 * i]), hold)
  redis.call('HINCRBY', KEYS[i + 2], 'reserved', amount)
  extend(KEYS[i + 2], keep)
  redis.call('HSET', KEYS[1], ARGV[2 + 4 * i], amount)
  if keep > longest then longest = keep end
end
redis.call('PEXPIRE', KEYS[1], longest)
redis.call('ZADD', KEYS[2], now + hold, id)
return out
"""
)

# KEYS: resv, due, counter…  ARGV: ns, id, then per counter: key, amount (-1: none), ttl_ms
# (-1: none). Returns {key, spent, reserved, …} for every touched counter.
_SETTLE = (
    _PRELUDE
    + """
local held = release(ARGV[1], ARGV[2])
local touched, order = {}, {}
for i = 1, #held, 2 do
  touched[held[i]] = ARGV[1] .. 'counter:' .. held[i]
  order[#order + 1] = held[i]
end
for i = 1, #KEYS - 2 do
  local key, amount, ttl = ARGV[3 * i], tonumber(ARGV[1 + 3 * i]), tonumber(ARGV[2 + 3 * i])
  if amount >= 0 then
    redis.call('HINCRBY', KEYS[i + 2], 'spent', amount)
    if not touched[key] then order[#order + 1] = key end
    touched[key] = KEYS[i + 2]
  end
  if ttl >= 0 and touched[key] and redis.call('EXISTS', KEYS[i + 2]) == 1 then
    extend(KEYS[i + 2], ttl)
  end
end
local out = {}
for _, key in ipairs(order) do
  local spent, reserved = level(touched[key])
  out[#out + 1] = key
  out[#out + 1] = spent
  out[#out + 1] = reserved
end
return out
"""
)

# KEYS: counter  ARGV: amount, ttl_ms
_ADD_SPENT = (
    _PRELUDE
    + """
redis.call('HINCRBY', KEYS[1], 'spent', ARGV[1])
extend(KEYS[1], tonumber(ARGV[2]))
local spent, reserved = level(KEYS[1])
return {spent, reserved}
"""
)

# KEYS: counter  ARGV: spent, ttl_ms
_SEED = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'spent', ARGV[1], 'reserved', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: due  ARGV: ns, now_ms, batch
_RECLAIM = _PRELUDE + "return reclaim_due(ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))\n"


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class RedisCounters:
    """The counter store shared by replicas through Redis; see the module docstring for the
    layout. One connection pool per instance (one per replica); `close` releases it."""

    def __init__(
        self,
        redis_url: str,
        namespace: str,
        *,
        clock: Callable[[], float] = time.time,
        timeout_s: float = 2.0,
        max_connections: int = 64,
    ) -> None:
        self.namespace = namespace
        self._clock = clock
        self._counter_prefix = namespace + "counter:"
        self._resv_prefix = namespace + "resv:"
        self._due = namespace + "resv-due"
        # A blocking pool: a burst of requests beyond `max_connections` waits (up to `timeout_s`)
        # for a connection instead of failing or opening one connection per request.
        pool = aioredis.BlockingConnectionPool.from_url(
            redis_url,
            max_connections=max_connections,
            timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._client = aioredis.Redis.from_pool(pool)
        register = self._client.register_script
        self._reserve = register(_RESERVE)
        self._settle = register(_SETTLE)
        self._add_spent = register(_ADD_SPENT)
        self._seed = register(_SEED)
        self._reclaim = register(_RECLAIM)

    async def reserve(
        self,
        reservation_id: str,
        charges: Sequence[Charge],
        hold_s: float,
        used: list[int] | None = None,
    ) -> Refusal | None:
        amounts_by_key(charges)  # refuses a key given twice
        check_hold(hold_s)
        keys = [self._resv_prefix + reservation_id, self._due]
        args: list[str | int] = [
            self._now_ms(),
            _ms(hold_s),
            RECLAIM_BATCH,
            self.namespace,
            reservation_id,
        ]
        for charge in charges:
            keys.append(self._counter_prefix + charge.key)
            limit = -1 if charge.limit is None else charge.limit
            args += (charge.key, charge.amount, limit, _ms(charge.ttl_s))
        reply = await self._call(self._reserve, keys, args)
        if reply[0] == 0:
            if used is not None:
                used.extend(int(after) for after in reply[1:])
            return None
        if reply[0] == -1:
            raise ValueError(f"reservation {reservation_id} is already open")
        charge = charges[reply[0] - 1]
        assert charge.limit is not None
        return Refusal(charge.key, charge.limit, int(reply[1]), int(reply[2]))

    async def settle(
        self, reservation_id: str, actual: Mapping[str, int], ttl_s: Mapping[str, float]
    ) -> dict[str, Level]:
        check_settlement(actual, ttl_s)
        keys = [self._resv_prefix + reservation_id, self._due]
        args: list[str | int] = [self.namespace, reservation_id]
        for key in {**actual, **ttl_s}:
            ttl = ttl_s.get(key)
            keys.append(self._counter_prefix + key)
            args += (key, actual.get(key, -1), -1 if ttl is None else _ms(ttl))
        reply = await self._call(self._settle, keys, args)
        return {
            reply[i].decode(): Level(int(reply[i + 1]), int(reply[i + 2]))
            for i in range(0, len(reply), 3)
        }

    async def add_spent(self, key: str, amount: int, ttl_s: float) -> Level:
        check_amount("amount", amount, key)
        check_ttl("ttl_s", ttl_s, key)
        reply = await self._call(
            self._add_spent, [self._counter_prefix + key], [amount, _ms(ttl_s)]
        )
        return Level(int(reply[0]), int(reply[1]))

    async def levels(self, keys: Sequence[str]) -> dict[str, Level]:
        if not keys:
            return {}
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hmget(self._counter_prefix + key, "spent", "reserved")
                replies = await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise CounterStoreUnavailable(f"Redis counters: {exc}") from exc
        return {
            key: Level(int(spent or 0), int(reserved or 0))
            for key, (spent, reserved) in zip(keys, replies, strict=True)
        }

    async def seed(self, key: str, spent: int, ttl_s: float) -> bool:
        check_amount("spent", spent, key)
        check_ttl("ttl_s", ttl_s, key)
        reply = await self._call(self._seed, [self._counter_prefix + key], [spent, _ms(ttl_s)])
        return bool(reply)

    async def reclaim(self) -> int:
        """Reclaims in batches, each one script, so a long backlog never blocks Redis for long."""
        total = 0
        batch = RECLAIM_BATCH * 8
        while True:
            args: list[str | int] = [self.namespace, self._now_ms(), batch]
            count = int(await self._call(self._reclaim, [self._due], args))
            total += count
            if count < batch:
                return total

    async def close(self) -> None:
        await self._client.aclose()

    def _now_ms(self) -> int:
        return math.floor(self._clock() * 1000)

    async def _call(self, script: Any, keys: list[str], args: Sequence[str | int]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except (redis.RedisError, OSError) as exc:
            raise CounterStoreUnavailable(f"Redis counters: {exc}") from exc
