"""Prometheus metrics of the data plane, served on `/metrics`.

Each app has its own registry (no module-level state: two apps in one process, as in tests,
count separately). Request metrics are observed from the finished request event, so they and
the event table always agree. Labels are configuration names (route, deployment) and the
status code, never what a client typed, so a client cannot blow up the series count. The event
pipeline, breakers and concurrency limits are read at scrape time by a collector.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from capstan.api.auth import presented_key
from capstan.api.problems import problem
from capstan.errors import CapstanError
from capstan.identity.roles import Permission

if TYPE_CHECKING:
    from capstan.gateway.runtime import Gateway

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


class GatewayMetrics:
    def __init__(self, gateway: Gateway) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "capstan_requests",
            "Data-plane requests, by route, serving deployment and HTTP status.",
            ["route", "deployment", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "capstan_request_duration_seconds",
            "Time from arrival to the last byte (streams) or the response (plain calls).",
            ["route", "deployment"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "capstan_time_to_first_byte_seconds",
            "Streams: time from arrival to the first byte sent to the client.",
            ["deployment"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.attempts = Counter(
            "capstan_upstream_attempts",
            "Upstream calls made, retries and fallbacks included.",
            ["route"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "capstan_tokens",
            "Tokens reported by upstreams, by deployment and kind (prompt, completion, cached).",
            ["deployment", "kind"],
            registry=self.registry,
        )
        self.registry.register(_StateCollector(gateway))
        # `labels()` validates and locks on every call; the label sets are few (configuration
        # names and statuses), so each series is looked up once and kept.
        self._series: dict[tuple[str, str, int], _Series] = {}

    def observe(self, event: dict[str, Any]) -> None:
        route, deployment, status = event["route"], event["deployment"] or "", event["status"]
        series = self._series.get((route, deployment, status))
        if series is None:
            series = self._series[(route, deployment, status)] = _Series(
                self, route, deployment, status
            )
        series.requests.inc()
        series.latency.observe(event["latency_ms"] / 1000)
        if event["attempts"]:
            series.attempts.inc(event["attempts"])
        if event["ttft_ms"] is not None and event["stream"]:
            series.ttft.observe(event["ttft_ms"] / 1000)
        for kind, counter in series.tokens:
            count = event[kind]
            if count:
                counter.inc(count)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Series:
    """The metric children of one (route, deployment, status)."""

    __slots__ = ("attempts", "latency", "requests", "tokens", "ttft")

    def __init__(self, metrics: GatewayMetrics, route: str, deployment: str, status: int) -> None:
        self.requests = metrics.requests.labels(route, deployment, str(status))
        self.latency = metrics.latency.labels(route, deployment)
        self.attempts = metrics.attempts.labels(route)
        self.ttft = metrics.ttft.labels(deployment)
        self.tokens = [
            (f"{kind}_tokens", metrics.tokens.labels(deployment, kind))
            for kind in ("prompt", "completion", "cached")
        ]


class _StateCollector(Collector):
    """Gauges read when scraped: events waiting and dropped, breakers, in-flight calls."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def collect(self) -> Iterator[Metric]:
        events = self.gateway.events
        yield GaugeMetricFamily(
            "capstan_events_waiting",
            "Request events spooled but not yet in the database.",
            value=events.waiting,
        )
        yield CounterMetricFamily(
            "capstan_events_dropped",
            "Request events lost (neither spooled nor stored). Must stay 0.",
            value=events.dropped,
        )
        yield CounterMetricFamily(
            "capstan_events_inserted",
            "Request events written to the database by this process.",
            value=events.inserted,
        )
        breakers = GaugeMetricFamily(
            "capstan_breaker_state",
            "Circuit breaker per deployment: 0 closed, 1 half-open, 2 open.",
            labels=["deployment"],
        )
        for name, state in sorted(self.gateway.breakers.states().items()):
            breakers.add_metric([name], BREAKER_STATES.get(state, 0))
        yield breakers
        in_flight = GaugeMetricFamily(
            "capstan_deployment_in_flight",
            "Calls holding a concurrency slot, per limited deployment.",
            labels=["deployment"],
        )
        queued = GaugeMetricFamily(
            "capstan_deployment_queued",
            "Calls waiting for a concurrency slot, per limited deployment.",
            labels=["deployment"],
        )
        for name, (running, waiting) in sorted(self.gateway.limits.snapshot().items()):
            in_flight.add_metric([name], running)
            queued.add_metric([name], waiting)
        yield in_flight
        yield queued


async def metrics_endpoint(request: Request) -> Response:
    """`GET /metrics`: for a key that may read the gateway's configuration (a Prometheus
    `authorization` credential), or for anyone when `metrics_public` is set."""
    gateway: Gateway = request.app.state.gateway
    if not gateway.settings.metrics_public:
        try:
            principal = await gateway.services.authenticator.authenticate_async(
                presented_key(request)
            )
            principal.require(Permission.GATEWAY_READ)
        except CapstanError as exc:
            return problem(exc.status, exc.slug, exc.title, exc.detail)
    return Response(gateway.metrics.exposition(), media_type=CONTENT_TYPE)


routes = [Route("/metrics", metrics_endpoint, methods=["GET"])]
