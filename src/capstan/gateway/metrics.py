"""Prometheus metrics of the data plane, served on `/metrics`.

Each app has its own registry (no module-level state: two apps in one process, as in tests,
count separately). Request metrics are observed from the finished request event, so they and
the event table always agree. Labels are configuration names (route, deployment) and the
status code, never what a client typed, so a client cannot blow up the series count. The event
pipeline, breakers and concurrency limits are read at scrape time by a collector.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
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


class _Histogram:
    """Bucket counts, their sum and count; cumulative only when exported."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        cumulative: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), self.counts, strict=True):
            running += count
            cumulative.append(("+Inf" if bound == float("inf") else str(bound), running))
        return cumulative


class _Series:
    """What one (route, deployment, status) has seen."""

    __slots__ = ("attempts", "latency", "requests", "tokens", "ttft")

    def __init__(self) -> None:
        self.requests = 0
        self.attempts = 0
        self.latency = _Histogram()
        self.ttft = _Histogram()
        self.tokens = {"prompt": 0, "completion": 0, "cached": 0}


_TOKEN_FIELDS = (
    ("prompt", "prompt_tokens"),
    ("completion", "completion_tokens"),
    ("cached", "cached_tokens"),
)


class GatewayMetrics:
    """Counts on the request path with plain integers and lists (the event loop is the only
    writer), turned into Prometheus families when scraped: prometheus-client's own metric
    objects take a lock and validate labels on every update, a measurable share of a call."""

    def __init__(self, gateway: Gateway) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._series: dict[tuple[str, str, int], _Series] = {}
        self.registry.register(_RequestCollector(self._series))
        self.registry.register(_StateCollector(gateway))

    def observe(self, event: dict[str, Any]) -> None:
        key = (event["route"], event["deployment"] or "", event["status"])
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series()
        series.requests += 1
        series.latency.observe(event["latency_ms"] / 1000)
        series.attempts += event["attempts"]
        if event["ttft_ms"] is not None and event["stream"]:
            series.ttft.observe(event["ttft_ms"] / 1000)
        tokens = series.tokens
        for kind, field in _TOKEN_FIELDS:
            count = event[field]
            if count:
                tokens[kind] += count

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _RequestCollector(Collector):
    """The request metrics, summed from the series when scraped."""

    def __init__(self, series: dict[tuple[str, str, int], _Series]) -> None:
        self.series = series

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "capstan_requests",
            "Data-plane requests, by route, serving deployment and HTTP status.",
            labels=["route", "deployment", "status"],
        )
        latency = HistogramMetricFamily(
            "capstan_request_duration_seconds",
            "Time from arrival to the last byte (streams) or the response (plain calls).",
            labels=["route", "deployment"],
        )
        ttft = HistogramMetricFamily(
            "capstan_time_to_first_byte_seconds",
            "Streams: time from arrival to the first byte sent to the client.",
            labels=["deployment"],
        )
        attempts = CounterMetricFamily(
            "capstan_upstream_attempts",
            "Upstream calls made, retries and fallbacks included.",
            labels=["route"],
        )
        tokens = CounterMetricFamily(
            "capstan_tokens",
            "Tokens reported by upstreams, by deployment and kind (prompt, completion, cached).",
            labels=["deployment", "kind"],
        )
        by_latency: dict[tuple[str, str], _Histogram] = {}
        by_ttft: dict[str, _Histogram] = {}
        by_route: dict[str, int] = {}
        by_tokens: dict[tuple[str, str], int] = {}
        for (route, deployment, status), series in sorted(list(self.series.items())):
            requests.add_metric([route, deployment, str(status)], series.requests)
            _merge(by_latency.setdefault((route, deployment), _Histogram()), series.latency)
            _merge(by_ttft.setdefault(deployment, _Histogram()), series.ttft)
            by_route[route] = by_route.get(route, 0) + series.attempts
            for kind, count in series.tokens.items():
                by_tokens[(deployment, kind)] = by_tokens.get((deployment, kind), 0) + count
        for (route, deployment), histogram in by_latency.items():
            latency.add_metric([route, deployment], histogram.buckets(), histogram.total)
        for deployment, histogram in by_ttft.items():
            if any(histogram.counts):
                ttft.add_metric([deployment], histogram.buckets(), histogram.total)
        for route, count in by_route.items():
            attempts.add_metric([route], count)
        for (deployment, kind), count in by_tokens.items():
            if count:
                tokens.add_metric([deployment, kind], count)
        yield from (requests, latency, ttft, attempts, tokens)


def _merge(into: _Histogram, other: _Histogram) -> None:
    into.counts = [a + b for a, b in zip(into.counts, other.counts, strict=True)]
    into.total += other.total


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
