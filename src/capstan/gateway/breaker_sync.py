"""Sharing circuit-breaker changes between replicas through Redis.

A replica whose breaker opens writes `<prefix><deployment>` (the wall-clock end of the cooldown,
expiring with it) and publishes the news; a replica whose probe succeeds deletes the key and
publishes the close. Every replica applies the others' news to its own breakers, and one that
starts later reads the keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import orjson
import redis
import redis.asyncio as aioredis

__all__ = ["BreakerNews", "RedisBreakerSync"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BreakerNews:
    """A breaker change as replicas tell each other: `until` is wall-clock epoch seconds."""

    deployment: str
    state: Literal["open", "closed"]
    until: float | None = None
    origin: str | None = None


class RedisBreakerSync:
    """Shares breaker changes between replicas through Redis keys and a pub/sub channel.

    `announce` only queues (the request path never waits on Redis); one writer task sends the
    queue in order, so an open and the close that follows cannot overtake each other. If Redis
    is unreachable the breakers keep working locally; that is logged once, until it recovers.
    """

    QUEUE_SIZE = 1024

    def __init__(
        self,
        redis_url: str,
        *,
        namespace: str = "capstan:",
        ready_timeout: float = 2.0,
    ) -> None:
        self.redis_url = redis_url
        self.prefix = namespace + "breaker:"
        self.channel = namespace + "breakers"
        self.ready_timeout = ready_timeout
        self._origin = ""
        self._apply: Callable[[BreakerNews], None] = lambda _news: None
        self._queue: asyncio.Queue[BreakerNews] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()
        self._down = False

    async def start(self, origin: str, apply: Callable[[BreakerNews], None]) -> None:
        """Subscribe and read the breakers already open, waiting at most `ready_timeout`:
        a replica starting while a deployment is broken should not send it traffic first."""
        self._origin = origin
        self._apply = apply
        self._queue = asyncio.Queue(self.QUEUE_SIZE)
        self._ready = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._listen(), name="breaker-listen"),
            asyncio.create_task(self._write(), name="breaker-write"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), self.ready_timeout)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._queue = None

    def announce(self, news: BreakerNews) -> None:
        if self._queue is None:
            return  # not started: this replica works alone
        try:
            self._queue.put_nowait(news)
        except asyncio.QueueFull:
            log.warning("breaker news dropped for %s: the Redis writer is behind", news.deployment)

    def _client(self) -> aioredis.Redis:
        return aioredis.Redis.from_url(self.redis_url, socket_connect_timeout=2.0)

    def _unreachable(self, exc: BaseException) -> None:
        if not self._down:
            self._down = True
            log.warning("breaker sync: Redis unreachable (%s); breakers stay local", exc)
        else:
            log.debug("breaker sync: Redis still unreachable: %s", exc)

    def _reachable(self) -> None:
        if self._down:
            self._down = False
            log.info("breaker sync: Redis reachable again; breakers shared")

    async def _write(self) -> None:
        assert self._queue is not None
        queue = self._queue
        client = self._client()
        try:
            while True:
                news = await queue.get()
                try:
                    await self._send(client, news)
                except (redis.RedisError, OSError) as exc:
                    self._unreachable(exc)
        finally:
            await client.aclose()

    async def _send(self, client: aioredis.Redis, news: BreakerNews) -> None:
        key = self.prefix + news.deployment
        message: dict[str, object] = {
            "deployment": news.deployment,
            "state": news.state,
            "origin": news.origin,
        }
        async with client.pipeline(transaction=False) as pipe:
            if news.state == "open":
                assert news.until is not None
                ttl_ms = math.ceil((news.until - time.time()) * 1000)
                if ttl_ms <= 0:
                    return  # already over
                pipe.set(key, repr(news.until), px=ttl_ms)
                message["until"] = news.until
            else:
                pipe.delete(key)
            pipe.publish(self.channel, orjson.dumps(message))
            await pipe.execute()

    async def _listen(self) -> None:
        while True:
            client = self._client()
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    # Wait for the confirmation, so no news published after the scan is missed.
                    await pubsub.get_message(timeout=self.ready_timeout)
                    await self._load_open(client)
                    self._reachable()
                    self._ready.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._receive(message["data"])
            except (redis.RedisError, OSError) as exc:
                self._unreachable(exc)
                self._ready.set()  # start() need not wait any longer: run locally for now
                await asyncio.sleep(1.0)
            finally:
                await client.aclose()

    async def _load_open(self, client: aioredis.Redis) -> None:
        """Read the breakers other replicas hold open (at start and after each reconnect)."""
        keys = [key async for key in client.scan_iter(match=_glob_escape(self.prefix) + "*")]
        if not keys:
            return
        values = await client.mget(keys)
        for key, value in zip(keys, values, strict=True):
            if value is None:
                continue  # expired between the scan and the read
            try:
                name = key.decode()[len(self.prefix) :]
                news = BreakerNews(name, "open", float(value))
            except (UnicodeDecodeError, ValueError):
                log.debug("breaker sync: ignoring malformed key %r", key)
                continue
            self._deliver(news)

    def _receive(self, data: bytes) -> None:
        try:
            body = orjson.loads(data)
            state = body["state"]
            until = body.get("until")
            if state not in ("open", "closed"):
                raise ValueError(state)
            news = BreakerNews(
                str(body["deployment"]),
                state,
                None if until is None else float(until),
                body.get("origin"),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            log.debug("breaker sync: ignoring malformed message %r", data)
            return
        if news.origin != self._origin:
            self._deliver(news)

    def _deliver(self, news: BreakerNews) -> None:
        try:
            self._apply(news)
        except Exception:  # a bad message must never stop the listener
            log.exception("breaker sync: applying %s failed", news)


def _glob_escape(text: str) -> str:
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)
