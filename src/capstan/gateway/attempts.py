"""Trying a request's candidate deployments in order until one answers.

A failure that another deployment might not have (rate limits, overload, 5xx, timeouts, a
connection error, our credentials or model name being wrong at one vendor) moves on to the next
candidate; a failure of the request itself (bad input, context too long, content policy, a
feature the wire format cannot express) is returned at once. A stream counts as answered once its
first item arrived: after that nothing is retried, because the client may already have bytes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from capstan.gateway.config.snapshot import Deployment
from capstan.gateway.config.specs import SECRET_OPTIONS
from capstan.gateway.providers.base import FailureKind, UpstreamError
from capstan.gateway.routing import LatencyTracker

T = TypeVar("T")

TRY_NEXT = frozenset(
    {
        FailureKind.RATE_LIMITED,
        FailureKind.OVERLOADED,
        FailureKind.SERVER,
        FailureKind.TIMEOUT,
        FailureKind.CONNECTION,
        FailureKind.MALFORMED,
        FailureKind.AUTHENTICATION,
        FailureKind.PERMISSION,
        FailureKind.NOT_FOUND,
    }
)


def redact(error: UpstreamError, deployment: Deployment) -> None:
    """Remove the deployment's credentials from a vendor's error message, wherever it quotes
    them, before the message can reach a client or a log."""
    upstream = deployment.upstream
    secrets = [upstream.api_key, *(upstream.options.get(name) for name in SECRET_OPTIONS)]
    for secret in secrets:
        if secret and len(secret) >= 8 and secret in error.message:
            error.message = error.message.replace(secret, "[redacted]")
            error.args = (error.message,)


@dataclass(frozen=True, slots=True)
class Served:
    deployment: Deployment
    attempts: int


async def first_answer(
    candidates: Sequence[Deployment],
    call: Callable[[Deployment], Awaitable[T]],
    latency: LatencyTracker,
) -> tuple[T, Served]:
    last: UpstreamError | None = None
    for attempt, deployment in enumerate(candidates, 1):
        started = time.monotonic()
        try:
            result = await call(deployment)
        except UpstreamError as exc:
            redact(exc, deployment)
            if exc.kind not in TRY_NEXT:
                raise
            last = exc
            continue
        latency.observe(deployment.name, time.monotonic() - started)
        return result, Served(deployment, attempt)
    assert last is not None, "no candidates"
    raise last


async def close_stream(stream: AsyncIterator[object]) -> None:
    """Close an upstream stream (and so its connection) early, e.g. when the client left."""
    closer = getattr(stream, "aclose", None)
    if closer is not None:
        await closer()


async def _redacting(stream: AsyncIterator[T], deployment: Deployment) -> AsyncGenerator[T, None]:
    """The rest of a stream, with credentials redacted from a failure that ends it."""
    try:
        async for item in stream:
            yield item
    except UpstreamError as exc:
        redact(exc, deployment)
        raise
    finally:
        await close_stream(stream)


async def first_stream(
    candidates: Sequence[Deployment],
    open_stream: Callable[[Deployment], AsyncIterator[T]],
    latency: LatencyTracker,
) -> tuple[T, AsyncGenerator[T, None], Served]:
    """The first candidate whose stream yields a first item: (that item, the rest, who)."""
    last: UpstreamError | None = None
    for attempt, deployment in enumerate(candidates, 1):
        started = time.monotonic()
        stream = open_stream(deployment)
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            last = UpstreamError(FailureKind.MALFORMED, "the upstream stream was empty")
            continue
        except UpstreamError as exc:
            redact(exc, deployment)
            if exc.kind not in TRY_NEXT:
                raise
            last = exc
            continue
        latency.observe(deployment.name, time.monotonic() - started)
        return first, _redacting(stream, deployment), Served(deployment, attempt)
    assert last is not None, "no candidates"
    raise last
