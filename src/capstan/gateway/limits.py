"""Per-deployment concurrency limits: a cap on calls in flight, with a short FIFO queue.

A deployment that can only serve so many calls at once (a self-hosted model, a provisioned
throughput unit) answers slowly or with errors beyond it; holding the excess briefly in a queue
smooths bursts, and refusing once the queue is full (`Saturated`) lets the caller try another
deployment at once instead of piling up behind a slow one.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from types import TracebackType

__all__ = ["ConcurrencyLimit", "DeploymentLimits", "Saturated"]


class Saturated(Exception):
    """The deployment is at its limit and its queue is full."""


class ConcurrencyLimit:
    """At most `limit` holders at once; up to `queue` more wait in arrival order.

    A release hands its slot straight to the oldest waiter rather than freeing it, so a new
    arrival can never overtake the queue. Use on one event loop only.
    """

    __slots__ = ("_waiters", "in_flight", "limit", "queue")

    def __init__(self, limit: int, queue: int) -> None:
        if limit < 1 or queue < 0:
            raise ValueError("limit must be at least 1 and queue at least 0")
        self.limit = limit
        self.queue = queue
        self.in_flight = 0  # slots held, including those handed to a waiter not yet resumed
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> None:
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1  # the common case: no future, no suspension
            return
        if len(self._waiters) >= self.queue:
            raise Saturated(f"{self.in_flight} calls in flight and {self.waiting} waiting")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as we were cancelled: pass it on
            elif waiter in self._waiters:  # a release may have dropped it already
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to the waiter; in_flight is unchanged
                return
        if self.in_flight <= 0:
            raise RuntimeError("release() without a matching acquire()")
        self.in_flight -= 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


class DeploymentLimits:
    """The limits of every deployment, kept while the deployment's limit stays the same.

    A changed limit gives a new `ConcurrencyLimit`: the calls holding (or waiting on) the old
    one finish against it, so a reload never strands a slot; for a short while both count.
    """

    def __init__(self, queue_factor: float = 1.0) -> None:
        if queue_factor < 0:
            raise ValueError("queue_factor must not be negative")
        self.queue_factor = queue_factor
        self._limits: dict[str, ConcurrencyLimit] = {}

    def for_deployment(self, name: str, max_concurrency: int | None) -> ConcurrencyLimit | None:
        """The deployment's limit; None when it has none (unlimited)."""
        current = self._limits.get(name)
        if max_concurrency is None or max_concurrency < 1:
            if current is not None:
                del self._limits[name]
            return None
        if current is not None and current.limit == max_concurrency:
            return current
        created = ConcurrencyLimit(max_concurrency, math.ceil(max_concurrency * self.queue_factor))
        self._limits[name] = created
        return created

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """name -> (in flight, waiting), for metrics; limits replaced by a reload are left out."""
        return {name: (limit.in_flight, limit.waiting) for name, limit in self._limits.items()}
