"""The config version: bumped in the transaction of every identity change, watched by replicas.

Each replica polls the version every `config_poll_interval` seconds (0.25 s by default), and when
Redis is configured also listens on a channel that the writer publishes to after its commit, so
a revoked key stops working on every replica well within a second. A poll that fails (database
down) keeps the cache: no key can be revoked while the database is down either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis
import redis.asyncio as aioredis
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from capstan.store.engine import Store
from capstan.store.schema import ConfigState

CHANNEL = "config-version"  # after the installation's Redis namespace
log = logging.getLogger(__name__)


class ConfigVersions:
    def __init__(
        self, store: Store, redis_url: str | None = None, namespace: str = "capstan:"
    ) -> None:
        self.store = store
        self.redis_url = redis_url
        self.channel = namespace + CHANNEL
        self._publisher = redis.Redis.from_url(redis_url) if redis_url else None
        self._listeners: list[Callable[[], None]] = []

    def bump(self, session: Session) -> None:
        session.execute(
            update(ConfigState).where(ConfigState.id == 1).values(version=ConfigState.version + 1)
        )
        event.listen(session, "after_commit", self._committed, once=True)

    def listen(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` after each commit of a change made in this process, before the
        change's response leaves: a replica sees its own changes at once, without a poll.
        It runs in the committing thread, so it must only hand the news over. Returns the
        function that stops the calls."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    def _committed(self, session: Session) -> None:
        for callback in list(self._listeners):
            try:
                callback()
            except Exception as exc:  # a listener must never fail a committed change
                log.warning("config change listener failed: %s", exc)
        if self._publisher is not None:
            self._publish(session)

    def current(self) -> int:
        with self.store.read() as session:
            return session.scalars(select(ConfigState.version).where(ConfigState.id == 1)).one()

    def _publish(self, _session: Session) -> None:
        assert self._publisher is not None
        try:
            self._publisher.publish(self.channel, "bump")
        except redis.RedisError as exc:  # the poll still catches the change
            log.warning("config version publish failed: %s", exc)

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()


class ConfigWatcher:
    """Calls `on_change` whenever the config version moves, until stopped."""

    def __init__(
        self, versions: ConfigVersions, on_change: Callable[[], None], interval: float
    ) -> None:
        self.versions = versions
        self.on_change = on_change
        self.interval = interval
        self._seen: int | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._poll(), name="config-poll"))
        if self.versions.redis_url:
            self._tasks.append(asyncio.create_task(self._listen(), name="config-listen"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def check(self) -> None:
        try:
            version = await asyncio.to_thread(self.versions.current)
        except Exception as exc:  # keep serving from cache; log and retry on the next tick
            log.debug("config version poll failed: %s", exc)
            return
        if version != self._seen:
            # The first reading too: a change may have landed between the caches being filled
            # at start (keys, the routing snapshot) and this first poll; one reload too many
            # at start is cheap, a missed change is served stale until the next one.
            self._seen = version
            self.on_change()

    async def _poll(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.interval)

    async def _listen(self) -> None:
        assert self.versions.redis_url is not None
        while True:
            client = aioredis.Redis.from_url(self.versions.redis_url)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(self.versions.channel)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self.on_change()
            except (redis.RedisError, OSError) as exc:
                log.warning("config channel lost (%s); polling continues, retrying in 1 s", exc)
                await asyncio.sleep(1.0)
            finally:
                await client.aclose()
