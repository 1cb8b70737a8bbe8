"""The data plane's long-lived state: the upstream connection pool, the provider adapters, the
routing snapshot (reloaded off the event loop whenever the config version moves), the circuit
breakers and concurrency limits, the request-event pipeline and the metrics."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid

from capstan.clock import utcnow
from capstan.config import Settings
from capstan.events.pipeline import EventPipeline
from capstan.finops.alerts import BudgetAlerts
from capstan.finops.budget_rules import counter_key
from capstan.finops.costing import Cost, Usage
from capstan.finops.counted_usage import counted_usage, reply_text
from capstan.finops.counters import CounterStore, CounterStoreUnavailable
from capstan.finops.guard import BudgetGuard, Crossing, Hold
from capstan.finops.memory_counters import MemoryCounters
from capstan.finops.metering import call_cost, max_output_tokens
from capstan.finops.rebuild import spent_so_far
from capstan.finops.redis_counters import RedisCounters
from capstan.gateway.breakers import BreakerBoard, BreakerPolicy, RedisBreakerSync
from capstan.gateway.config.snapshot import Alias, Deployment, RoutingTable, load_routing_table
from capstan.gateway.errors import GatewayError
from capstan.gateway.limits import DeploymentLimits
from capstan.gateway.metrics import GatewayMetrics
from capstan.gateway.providers.base import Provider
from capstan.gateway.providers.registry import provider_for
from capstan.gateway.recording import CallRecord
from capstan.gateway.routing import LatencyTracker, candidates, static_order
from capstan.gateway.upstream_client import UpstreamClient
from capstan.prompts.snapshot import VersionCache
from capstan.services import Services
from capstan.serving.runtime import ModelServer

log = logging.getLogger(__name__)
# No cap on the pool: concurrency is bounded where it means something (a deployment's
# `max_concurrency`), and a capped connector costs about 3 % of throughput in bookkeeping.
RELOAD_RETRY_S = 1.0
RECLAIM_INTERVAL_S = 5.0


def unreported_cost(amount: int) -> Cost:
    """A served call whose provider reported no usage (a stream cut short): its reservation
    is what it is charged, marked estimated, so a budget never counts less than was spent."""
    return Cost(
        input=0, cache_read=0, cache_write=0, output=amount, reasoning=0, other=0, estimated=True
    )


def used_tokens(record: CallRecord, hold: Hold) -> int:
    """The tokens a call counts on token rate limits: what the provider reported, or, for a
    served call it reported nothing for, the worst case that was reserved."""
    if record.prompt_tokens is None and record.completion_tokens is None:
        return hold.tokens if record.deployment is not None else 0
    return (record.prompt_tokens or 0) + (record.completion_tokens or 0)


class Gateway:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings: Settings = services.settings
        settings = self.settings
        self.latency = LatencyTracker()
        policy = BreakerPolicy(
            failures=settings.breaker_failures,
            error_ratio=settings.breaker_error_ratio,
            min_calls=settings.breaker_min_calls,
            window_s=settings.breaker_window_s,
            cooldown_s=settings.breaker_cooldown_s,
        )
        shared = None
        if settings.redis_url:
            shared = RedisBreakerSync(settings.redis_url, namespace=settings.redis_namespace)
        self.breakers = BreakerBoard(policy, shared=shared)
        self.limits = DeploymentLimits(settings.queue_factor)
        self.events = EventPipeline(
            services.store,
            settings.spool_dir,
            batch_size=settings.events_batch_size,
            flush_interval_s=settings.events_flush_interval_s,
        )
        self.metrics = GatewayMetrics(self)
        self.counters: CounterStore = (
            RedisCounters(settings.redis_url, settings.redis_namespace)
            if settings.redis_url
            else MemoryCounters()
        )
        if settings.workers > 1 and not settings.redis_url:
            log.warning(
                "%d workers without CAPSTAN_REDIS_URL: each worker counts budgets on its own, "
                "so together they may spend up to %d times a limit",
                settings.workers,
                settings.workers,
            )
        self.alerts = BudgetAlerts(services.store, services.pauses, settings.budget_webhook_url)
        self.guard = BudgetGuard(self.counters, self._crossed)
        self._settling: set[asyncio.Task[None]] = set()
        # Budget counter keys already rebuilt from the store by this process.
        self._seeded: set[str] = set()
        self._reclaiming: asyncio.Task[None] | None = None
        self.rng = random.Random()  # noqa: S311 - load spreading, not security
        self._table: RoutingTable | None = None
        self._http: UpstreamClient | None = None
        self._reload: asyncio.Task[None] | None = None
        # Config changes seen, and how many of them the current snapshot reflects.
        self._wanted, self._loaded = 1, 0
        self._retry_at = 0.0
        self.started = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # Candidate lists of the names whose order never changes, for the current table.
        self._memo: dict[str, list[Deployment]] = {}
        self._memo_table: RoutingTable | None = None
        # Compiled prompt versions, kept across snapshots (a version never changes).
        self.prompt_versions = VersionCache()
        # Registry models, loaded on first use.
        self.models = ModelServer(
            services.registry.artifacts,
            services.store,
            services.audit,
            settings.model_cache_size,
        )

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._http = UpstreamClient()
        await self.events.start()
        await self.breakers.start()
        self._reclaiming = self.loop.create_task(self._reclaim_holds())
        self.started = True
        try:
            await self.reload()
        except Exception as exc:  # the control API must come up even if this fails
            log.warning("routing snapshot not loaded at start (%s); will retry on first use", exc)

    async def stop(self) -> None:
        """After the server drained its requests: close the pool and flush the events (what
        cannot reach the database in time stays in the spool for the next start)."""
        if self._reload is not None:
            self._reload.cancel()
        if self._reclaiming is not None:
            self._reclaiming.cancel()
        await self.breakers.stop()
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)
        await self.alerts.drain()
        await self.counters.close()
        self.models.close()
        if self._http is not None:
            await self._http.close()
        await self.events.stop()

    @property
    def org_id(self) -> uuid.UUID | None:
        return self._table.org_id if self._table is not None else None

    def finish(self, record: CallRecord) -> None:
        """The request is over (or its last byte is about to go): count it and spool its event.
        (An event without an organization, before any routing snapshot loaded, is refused by
        the store and kept in the spool's `rejected/` folder, never dropped.)"""
        hold = record.hold
        if record.deployment is not None:
            usage = record.usage()
            table = self._table
            if table is not None:
                model = record.upstream_model or ""
                reported = usage is not None
                if usage is None:  # the provider said nothing: count the tokens ourselves
                    usage = self._counted(record, table, model)
                if usage is not None:
                    record.cost = call_cost(
                        table.prices,
                        record.deployment,
                        model,
                        record.created_at,
                        usage,
                        estimated=not reported,
                    )
            if usage is None and hold is not None:  # nothing known: assume the worst
                record.cost = unreported_cost(hold.amount)
        event = record.event()
        self.metrics.observe(event)
        self.events.record(event)
        if hold is not None:
            cost = record.cost.total if record.cost is not None else 0
            tokens = used_tokens(record, hold) if hold.caps else 0
            if self.guard.settle_inline(hold, cost, tokens):
                return
            task = self.loop.create_task(self.guard.settle(hold, cost, tokens))
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)

    @staticmethod
    def _counted(record: CallRecord, table: RoutingTable, model: str) -> Usage | None:
        """Usage counted with the model's tokenizer, noted on the record (the event then
        says which tokens were counted: `cost_estimated`); None where it cannot be."""
        deployment = table.deployments.get(record.deployment or "")
        body = record.request_body
        if deployment is None or not isinstance(body, dict):
            return None
        output = record.output_text() or reply_text(record.response_body)
        usage = counted_usage(model, body, output, max_output_tokens(body, deployment))
        if usage is not None:
            record.prompt_tokens = usage.prompt_tokens
            record.completion_tokens = usage.completion_tokens
        return usage

    async def _reclaim_holds(self) -> None:
        """Release the budget holds of requests that died (a killed replica's, with Redis):
        until then they count as reserved and could refuse a call that would fit."""
        while True:
            await asyncio.sleep(RECLAIM_INTERVAL_S)
            try:
                await self.counters.reclaim()
            except CounterStoreUnavailable as exc:
                log.warning("budget holds not reclaimed: %s", exc)

    def _crossed(self, crossings: list[Crossing]) -> None:
        self.alerts.raise_(crossings, utcnow(), self.http)

    @property
    def table(self) -> RoutingTable | None:
        """The routing snapshot in use (prices and budgets included)."""
        return self._table

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the gateway runs on (the request path's timers need it)."""
        assert self._loop is not None, "the gateway is not started"
        return self._loop

    @property
    def http(self) -> UpstreamClient:
        assert self._http is not None, "the gateway is not started"
        return self._http

    async def routing_table(self) -> RoutingTable:
        """The current snapshot. After a change it waits for the reload, so a request that
        follows a configuration change always sees it (a load that was already running when
        the change landed does not count); while the database cannot be read it serves the
        last snapshot, trying the load again at most once a second."""
        table = self._fresh_table()
        if table is not None:
            return table
        await asyncio.shield(self._reloading())
        assert self._table is not None
        return self._table

    def _fresh_table(self) -> RoutingTable | None:
        """The snapshot, when no reload needs waiting for."""
        table = self._table
        if table is not None and (
            self._loaded == self._wanted or time.monotonic() < self._retry_at
        ):
            return table
        return None

    def _reloading(self) -> asyncio.Task[None]:
        """The load in flight, or a new one."""
        if self._reload is None or self._reload.done():
            self._reload = asyncio.get_running_loop().create_task(self.reload())
        return self._reload

    async def reload(self) -> None:
        """Build a new snapshot in a thread (it reads the database) and swap it in whole;
        again, if a change landed while it loaded."""
        while True:
            wanted = self._wanted
            try:
                table = await asyncio.to_thread(
                    load_routing_table,
                    self.services.store,
                    self.services.vault,
                    prompt_cache=self.prompt_versions,
                )
            except Exception as exc:  # keep serving the previous snapshot
                if self._table is None:
                    raise
                self._retry_at = time.monotonic() + RELOAD_RETRY_S
                log.warning("routing reload failed, keeping the previous snapshot: %s", exc)
                return
            await self._seed_budgets(table)
            self._table, self._loaded = table, wanted
            if wanted == self._wanted:
                return

    async def _seed_budgets(self, table: RoutingTable) -> None:
        """Counters of budgets this process has not counted yet start from what the store
        says was spent in their period, before any request can reserve on them."""
        now = utcnow()
        rules = [r for r in table.budgets.rules if counter_key(r, now)[0] not in self._seeded]
        if not rules:
            return
        try:
            spent = await asyncio.to_thread(spent_so_far, self.services.store, rules, now)
            for key, (amount, ttl) in spent.items():
                await self.counters.seed(key, amount, ttl)
                self._seeded.add(key)
        except Exception as exc:  # routing must not stop for it; the next reload tries again
            log.warning("budget counters not rebuilt from the store (yet): %s", exc)

    def config_changed(self) -> None:
        """Called on the event loop when the config version moves (a poll, Redis, or a change
        committed by this process): the snapshot is stale; start loading the next one."""
        self._wanted += 1
        self._retry_at = 0.0
        self._reloading()

    async def targets(self, model: str) -> tuple[list[Deployment], Alias | None]:
        """The deployments to try for `model` (an alias or a deployment), best first, and the
        alias when it is one (its fallback rules apply to the whole request)."""
        table = self._fresh_table() or await self.routing_table()
        if table is not self._memo_table:
            self._memo, self._memo_table = {}, table
        found = self._memo.get(model)
        if found is None:
            found = candidates(table, model, rng=self.rng, latency=self.latency.averages)
            if found and static_order(table, model):
                self._memo[model] = found
        if not found:
            raise GatewayError(
                404,
                f"the model `{model}` does not exist or you do not have access to it",
                param="model",
                code="model_not_found",
            )
        alias = table.aliases.get(model)
        return found, alias

    def provider(self, kind: str) -> Provider:
        return provider_for(kind)
