"""Circuit breakers: stop sending calls to a deployment that keeps failing, then probe it.

A breaker per deployment opens after `failures` consecutive failures, or when failures reach
`error_ratio` of the calls of the last `window_s` seconds once `min_calls` were seen. It stays
open for `cooldown_s`, then half-opens: one probe call goes through; its success closes the
breaker, its failure opens it again. The breakers are plain state machines fed the time, so the
decisions are tested without clocks or servers; everything on the request path is synchronous,
O(1) and free of I/O.

With Redis, replicas share what they learn: a replica whose breaker opens writes
`<prefix><deployment>` (the wall-clock end of the cooldown, expiring with it) and publishes the
news; a replica whose probe succeeds deletes the key and publishes the close. Every replica
applies the others' news to its own breakers, and one that starts later reads the keys. Probing
stays per replica: when a shared cooldown ends, each replica sends its own single probe. That
costs at most one call per replica and keeps the request path free of a distributed lock.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from capstan.gateway.breaker_sync import BreakerNews, RedisBreakerSync

__all__ = [
    "BreakerBoard",
    "BreakerNews",
    "BreakerPolicy",
    "CircuitBreaker",
    "RedisBreakerSync",
]

log = logging.getLogger(__name__)

State = Literal["closed", "open", "half_open"]
Transition = Literal["opened", "closed"] | None

BUCKETS = 10
PROBE_RETRY_S = 1.0  # Retry-After while a probe is out: a probe usually takes one call's latency


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failures: int = 5
    error_ratio: float = 0.5
    min_calls: int = 20
    window_s: float = 30.0
    cooldown_s: float = 30.0
    # A probe whose outcome is never recorded (a bug in a caller, a stream left open) must not
    # keep the deployment out of service forever: after this long another probe may go.
    probe_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.failures < 1 or self.min_calls < 1:
            raise ValueError("failures and min_calls must be at least 1")
        if not 0.0 < self.error_ratio <= 1.0:
            raise ValueError("error_ratio must be in (0, 1]")
        if self.window_s <= 0 or self.cooldown_s < 0 or self.probe_timeout_s <= 0:
            raise ValueError("window_s and probe_timeout_s must be positive, cooldown_s >= 0")


class CircuitBreaker:
    """One deployment's breaker. Time is passed in (monotonic seconds).

    The breaker counts the calls it admitted that have not ended (`in_flight`), because the
    end of a call carries no ticket: when it half-opens, the calls admitted before are still
    running, and one of them ending with `record_release` must not be mistaken for the probe's
    end, or a second probe would go out while the first still runs. A success or a failure
    recorded while half-open decides either way: it is news about the deployment's health,
    whichever call brings it.
    """

    __slots__ = (
        "_calls",
        "_consecutive",
        "_fails",
        "_head",
        "_open_until",
        "_probe_at",
        "_probe_taken",
        "_stale",
        "_state",
        "_total_calls",
        "_total_fails",
        "_width",
        "in_flight",
        "policy",
    )

    def __init__(self, policy: BreakerPolicy = BreakerPolicy()) -> None:
        self.policy = policy
        self._state: State = "closed"
        self._open_until = 0.0
        self._consecutive = 0
        self._probe_taken = False
        self._probe_at = 0.0
        self._stale = 0  # admitted before the current probe and not ended yet
        self.in_flight = 0
        self._reset_window()

    def state(self, now: float) -> State:
        if self._state == "open" and now >= self._open_until:
            self._state = "half_open"
            self._probe_taken = False
            self._stale = self.in_flight
        return self._state

    def allow(self, now: float) -> bool:
        """Whether a call may go now; in half-open this takes the one probe slot."""
        state = self.state(now)
        if state == "closed":
            self.in_flight += 1
            return True
        if state == "open":
            return False
        if self._probe_taken:
            if now - self._probe_at < self.policy.probe_timeout_s:
                return False
            self._stale += 1  # the lost probe, if it ever ends, is not the new one
        self._probe_taken = True
        self._probe_at = now
        self.in_flight += 1
        return True

    def refuses(self, now: float) -> bool:
        """Whether `allow` would say no now, without taking the probe slot."""
        state = self.state(now)
        if state == "open":
            return True
        return state == "half_open" and self._probe_blocked(now)

    def retry_in(self, now: float) -> float:
        """Seconds until this breaker may take a call; 0 when it may now."""
        state = self.state(now)
        if state == "open":
            return self._open_until - now
        if state == "half_open" and self._probe_blocked(now):
            return min(PROBE_RETRY_S, self._probe_at + self.policy.probe_timeout_s - now)
        return 0.0

    @property
    def open_until(self) -> float | None:
        """The monotonic end of the cooldown while open (as last computed), else None."""
        return self._open_until if self._state == "open" else None

    def record_success(self, now: float) -> Transition:
        state = self.state(now)
        self._ended()
        if state == "half_open":
            self._close()
            return "closed"
        if state == "closed":
            self._advance(now)
            self._calls[self._head % BUCKETS] += 1
            self._total_calls += 1
            self._consecutive = 0
        return None  # open: a call admitted before the breaker opened says nothing new

    def record_failure(self, now: float) -> Transition:
        state = self.state(now)
        self._ended()
        if state == "half_open":
            self._open(now)
            return "opened"
        if state == "open":
            return None  # a late failure of a call admitted before must not extend the cooldown
        self._advance(now)
        slot = self._head % BUCKETS
        self._calls[slot] += 1
        self._fails[slot] += 1
        self._total_calls += 1
        self._total_fails += 1
        self._consecutive += 1
        policy = self.policy
        if self._consecutive >= policy.failures or (
            self._total_calls >= policy.min_calls
            and self._total_fails >= policy.error_ratio * self._total_calls
        ):
            self._open(now)
            return "opened"
        return None

    def record_release(self, now: float) -> None:
        """An admitted call ended saying nothing about health (client left, bad request)."""
        state = self.state(now)
        self._ended()
        if state != "half_open" or not self._probe_taken:
            return
        if self._stale > 0:
            self._stale -= 1  # most likely a call admitted before the probe
        else:
            self._probe_taken = False

    def set_policy(self, policy: BreakerPolicy) -> None:
        """Counts made under the old thresholds (or window) would mislead the new ones."""
        self.policy = policy
        self._consecutive = 0
        self._reset_window()

    def force_open(self, until: float) -> None:
        """Open until the monotonic time `until` (never shortening a longer local cooldown)."""
        if self._state == "open":
            until = max(until, self._open_until)
        self._state = "open"
        self._open_until = until
        self._probe_taken = False
        self._consecutive = 0
        self._reset_window()

    def force_close(self) -> None:
        self._close()

    def _probe_blocked(self, now: float) -> bool:
        return self._probe_taken and now - self._probe_at < self.policy.probe_timeout_s

    def _ended(self) -> None:
        if self.in_flight > 0:
            self.in_flight -= 1
        self._stale = min(self._stale, self.in_flight)

    def _open(self, now: float) -> None:
        self._state = "open"
        self._open_until = now + self.policy.cooldown_s
        self._probe_taken = False
        self._consecutive = 0
        self._reset_window()

    def _close(self) -> None:
        self._state = "closed"
        self._probe_taken = False
        self._stale = 0
        self._consecutive = 0
        self._reset_window()

    def _reset_window(self) -> None:
        self._width = self.policy.window_s / BUCKETS
        self._calls = [0] * BUCKETS
        self._fails = [0] * BUCKETS
        self._total_calls = 0
        self._total_fails = 0
        self._head = -1  # the bucket number last written; -1: none yet

    def _advance(self, now: float) -> None:
        """Move the window to `now`, emptying the buckets that fell out of it: at most
        BUCKETS steps, so recording stays O(1)."""
        index = max(int(now // self._width), 0)
        head = self._head
        if index <= head:
            return  # same bucket, or a clock that stepped back: count it in the newest
        if head < 0 or index - head >= BUCKETS:
            for slot in range(BUCKETS):
                self._calls[slot] = self._fails[slot] = 0
            self._total_calls = self._total_fails = 0
        else:
            for number in range(head + 1, index + 1):
                slot = number % BUCKETS
                self._total_calls -= self._calls[slot]
                self._total_fails -= self._fails[slot]
                self._calls[slot] = self._fails[slot] = 0
        self._head = index


class BreakerBoard:
    """The breakers of every deployment this process calls. Call it on the event loop."""

    def __init__(
        self,
        policy: BreakerPolicy = BreakerPolicy(),
        *,
        clock: Callable[[], float] = time.monotonic,
        shared: RedisBreakerSync | None = None,
    ) -> None:
        self.policy = policy
        self.origin = uuid.uuid4().hex
        self._clock = clock
        self._shared = shared
        self._breakers: dict[str, CircuitBreaker] = {}

    def breaker(self, deployment: str) -> CircuitBreaker:
        found = self._breakers.get(deployment)
        if found is None:
            found = self._breakers[deployment] = CircuitBreaker(self.policy)
        return found

    def allow(self, deployment: str) -> bool:
        return self.breaker(deployment).allow(self._clock())

    def is_open(self, deployment: str) -> bool:
        found = self._breakers.get(deployment)
        return found is not None and found.refuses(self._clock())

    def success(self, deployment: str) -> None:
        if self.breaker(deployment).record_success(self._clock()) == "closed":
            self._tell(BreakerNews(deployment, "closed", origin=self.origin))

    def failure(self, deployment: str) -> None:
        breaker = self.breaker(deployment)
        now = self._clock()
        if breaker.record_failure(now) == "opened":
            assert breaker.open_until is not None
            until = time.time() + (breaker.open_until - now)
            self._tell(BreakerNews(deployment, "open", until, self.origin))

    def release(self, deployment: str) -> None:
        found = self._breakers.get(deployment)
        if found is not None:
            found.record_release(self._clock())

    def retry_in(self, deployments: Iterable[str]) -> float:
        """The soonest any of them may take a call, in seconds (0 for an unknown one)."""
        now = self._clock()
        soonest = math.inf
        for name in deployments:
            found = self._breakers.get(name)
            wait = 0.0 if found is None else found.retry_in(now)
            soonest = min(soonest, wait)
            if soonest <= 0.0:
                return 0.0
        return 0.0 if soonest == math.inf else soonest

    def states(self) -> dict[str, str]:
        now = self._clock()
        return {name: breaker.state(now) for name, breaker in self._breakers.items()}

    def set_policy(self, policy: BreakerPolicy) -> None:
        """New thresholds apply from the next call; open breakers keep their cooldown."""
        self.policy = policy
        for breaker in self._breakers.values():
            breaker.set_policy(policy)

    async def start(self) -> None:
        if self._shared is not None:
            await self._shared.start(self.origin, self.apply)

    async def stop(self) -> None:
        if self._shared is not None:
            await self._shared.stop()

    def apply(self, news: BreakerNews) -> None:
        """Apply another replica's news to the local breaker."""
        if news.origin == self.origin:
            return
        if news.state == "closed":
            found = self._breakers.get(news.deployment)
            if found is not None:
                found.force_close()
            return
        if news.until is None:
            return
        now = self._clock()
        until = now + (news.until - time.time())
        if until > now:
            self.breaker(news.deployment).force_open(until)

    def _tell(self, news: BreakerNews) -> None:
        if self._shared is not None:
            self._shared.announce(news)
