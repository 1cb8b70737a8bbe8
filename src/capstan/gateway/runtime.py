"""The data plane's long-lived state: the upstream connection pool, the provider adapters and
the routing snapshot, reloaded off the event loop whenever the config version moves."""

from __future__ import annotations

import asyncio
import logging
import random

import aiohttp

from capstan.gateway.config.snapshot import Deployment, RoutingTable, load_routing_table
from capstan.gateway.errors import GatewayError
from capstan.gateway.providers.base import Provider
from capstan.gateway.providers.registry import provider_for
from capstan.gateway.routing import LatencyTracker, candidates
from capstan.services import Services

log = logging.getLogger(__name__)
POOL_SIZE = 1_000


class Gateway:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.latency = LatencyTracker()
        self.rng = random.Random()  # noqa: S311 - load spreading, not security
        self._table: RoutingTable | None = None
        self._http: aiohttp.ClientSession | None = None
        self._reload: asyncio.Task[None] | None = None
        self._stale = True

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=POOL_SIZE, ttl_dns_cache=300)
        self._http = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        try:
            await self.reload()
        except Exception as exc:  # the control API must come up even if this fails
            log.warning("routing snapshot not loaded at start (%s); will retry on first use", exc)

    async def stop(self) -> None:
        if self._reload is not None:
            self._reload.cancel()
        if self._http is not None:
            await self._http.close()

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None, "the gateway is not started"
        return self._http

    async def routing_table(self) -> RoutingTable:
        """The current snapshot; after a change it waits for the reload, so a request that
        follows a configuration change always sees it."""
        if self._stale or self._table is None:
            if self._reload is not None and not self._reload.done():
                await asyncio.shield(self._reload)
            if self._stale or self._table is None:
                await self.reload()
        assert self._table is not None
        return self._table

    async def reload(self) -> None:
        """Build a new snapshot in a thread (it reads the database) and swap it in whole."""
        self._stale = False  # a change landing during the load marks it stale again
        try:
            self._table = await asyncio.to_thread(
                load_routing_table, self.services.store, self.services.vault
            )
        except Exception as exc:  # keep serving the previous snapshot; retry on next change
            if self._table is None:
                self._stale = True
                raise
            log.warning("routing reload failed, keeping the previous snapshot: %s", exc)

    def config_changed(self) -> None:
        """Called on the event loop when the config version moves (a poll, Redis, or a change
        committed by this process): mark the snapshot stale and start loading the next one."""
        self._stale = True
        if self._reload is None or self._reload.done():
            self._reload = asyncio.get_running_loop().create_task(self.reload())

    async def targets(self, model: str) -> list[Deployment]:
        """The deployments to try for `model` (an alias or a deployment), best first."""
        table = await self.routing_table()
        found = candidates(table, model, rng=self.rng, latency=self.latency.averages)
        if not found:
            raise GatewayError(
                404,
                f"the model `{model}` does not exist or you do not have access to it",
                param="model",
                code="model_not_found",
            )
        return found

    def provider(self, kind: str) -> Provider:
        return provider_for(kind)
