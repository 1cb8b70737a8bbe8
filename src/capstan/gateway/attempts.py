"""Running one request's attempts over its candidate deployments, inside one deadline.

Attempts go in rounds. Each round tries, in routing order, every candidate still in play whose
breaker lets a call through and whose `Retry-After` has passed; the first answer wins. A
transient failure (429, 5xx, timeout, lost connection) keeps its deployment in play for a later
round, up to its `max_retries`; so a failing primary hands over to the next target or the
alias's fallbacks at once, and is retried after an exponential backoff with full jitter only
when nobody else answered. Between rounds the wait is the backoff or the soonest `Retry-After`,
whichever is longer; a wait that would pass the deadline ends the request with the last
failure (so a 429 keeps its `Retry-After` for the client). One deadline bounds everything:
`x-capstan-timeout`, or else the first candidate's timeout.

A stream counts as answered once its first item arrived: after that nothing is retried,
because the client may already have bytes; a stream that goes silent for the idle timeout
before or after that point is a stalled stream, i.e. a timeout.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from capstan.gateway.config.snapshot import Deployment
from capstan.gateway.config.specs import SECRET_OPTIONS
from capstan.gateway.errors import GatewayError
from capstan.gateway.limits import ConcurrencyLimit, Saturated
from capstan.gateway.providers.base import FailureKind, UpstreamError
from capstan.gateway.retry_policy import (
    UNHEALTHY,
    Next,
    after_failure,
    backoff,
    fits_after_overflow,
)

if TYPE_CHECKING:
    from capstan.gateway.recording import CallRecord
    from capstan.gateway.runtime import Gateway

T = TypeVar("T")
R = TypeVar("R")


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


@dataclass(frozen=True, slots=True)
class Deadline:
    budget_s: float
    ends_at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(seconds, time.monotonic() + seconds)

    def remaining(self) -> float:
        return self.ends_at - time.monotonic()

    def exceeded(self) -> GatewayError:
        return GatewayError(
            504,
            f"the request did not complete within its deadline of {self.budget_s:g} s",
            type="timeout_error",
            code="deadline_exceeded",
        )


@dataclass(slots=True)
class _Candidate:
    deployment: Deployment
    tries: int = 0
    not_before: float = 0.0


@dataclass(slots=True)
class _Attempt(Generic[R]):
    result: R
    slot: ConcurrencyLimit | None


@dataclass(slots=True)
class Attempts:
    """One request's attempts; `answer` for a plain call, `stream` for a stream."""

    gateway: Gateway
    candidates: Sequence[Deployment]
    deadline: Deadline
    record: CallRecord
    content_policy_fallback: bool = False
    _last: Exception | None = field(default=None, init=False)
    _deadline_hit: bool = field(default=False, init=False)
    # The largest context window a prompt overflowed so far (None: unknown or none yet).
    _overflowed: int | None = field(default=None, init=False)
    _overflow_seen: bool = field(default=False, init=False)

    async def answer(self, call: Callable[[Deployment], Awaitable[T]]) -> tuple[T, Served]:
        """A plain call. Its first attempt on the first candidate, which is nearly every
        request, runs right here: every resume of the upstream call passes through each
        coroutine frame between the task and the socket, so the common case keeps that chain
        short (measured: ~8 % of a call's time in the nested frames). A failure, a
        concurrency limit or a breaker that refuses continues in rounds (`_run`)."""
        deployment = self.candidates[0]
        breakers = self.gateway.breakers
        remaining = self.deadline.remaining()
        if (
            deployment.max_concurrency is not None
            or remaining <= 0
            or not breakers.allow(deployment.name)
        ):
            return await self._answer_in_rounds(call)
        budget = min(deployment.upstream.timeout_s, remaining)
        self.record.attempts = 1
        started = time.monotonic()
        timer = _Timer(self.gateway.loop, budget)
        try:
            result = await call(deployment)
        except asyncio.CancelledError:
            if not timer.expired():
                breakers.release(deployment.name)
                raise
            failure = self._timed_out(budget, remaining, math.inf)
        except UpstreamError as exc:
            failure = exc
        except BaseException:
            breakers.release(deployment.name)
            raise
        else:
            breakers.success(deployment.name)
            self.gateway.latency.observe(deployment.name, time.monotonic() - started)
            return result, Served(deployment, 1)
        finally:
            timer.cancel()
        first = _Candidate(deployment, tries=1)
        pending = [first, *(_Candidate(d) for d in self.candidates[1:])]
        self._failed(first, failure, pending)
        return await self._answer_in_rounds(call, pending, [c for c in pending if c is not first])

    async def _answer_in_rounds(
        self,
        call: Callable[[Deployment], Awaitable[T]],
        pending: list[_Candidate] | None = None,
        rest_of_round: list[_Candidate] | None = None,
    ) -> tuple[T, Served]:
        attempt, served = await self._run(
            lambda d, _idle: call(d), pending=pending, rest_of_round=rest_of_round
        )
        if attempt.slot is not None:
            attempt.slot.release()
        return attempt.result, served

    async def stream(
        self, open_stream: Callable[[Deployment], AsyncIterator[T]]
    ) -> tuple[T, AsyncGenerator[T, None], Served]:
        """The first candidate whose stream yields a first item: (that item, the rest, who)."""

        async def first_item(deployment: Deployment, idle: float) -> tuple[T, AsyncIterator[T]]:
            stream = open_stream(deployment)
            try:
                return await anext(stream), stream
            except StopAsyncIteration:
                await close_stream(stream)
                raise UpstreamError(
                    FailureKind.MALFORMED, "the upstream stream was empty"
                ) from None
            except BaseException:
                await close_stream(stream)
                raise

        attempt, served = await self._run(first_item, streaming=True)
        first, stream = attempt.result
        deployment = served.deployment
        rest = self._rest(stream, deployment, self._idle_s(deployment), attempt.slot)
        return first, rest, served

    def _idle_s(self, deployment: Deployment) -> float:
        configured = deployment.stream_idle_timeout_s
        return configured if configured is not None else self.gateway.settings.stream_idle_timeout_s

    async def _run(
        self,
        one: Callable[[Deployment, float], Awaitable[R]],
        *,
        streaming: bool = False,
        pending: list[_Candidate] | None = None,
        rest_of_round: list[_Candidate] | None = None,
    ) -> tuple[_Attempt[R], Served]:
        """Rounds of attempts until one answers. `pending` and `rest_of_round` resume a first
        round that `answer` began."""
        gateway, breakers = self.gateway, self.gateway.breakers
        if pending is None:
            pending = [_Candidate(d) for d in self.candidates]
        tried = rest_of_round is not None
        this_round = list(pending) if rest_of_round is None else rest_of_round
        round_ = 0
        while True:
            for candidate in this_round:
                deployment = candidate.deployment
                if self._overflow_seen and not fits_after_overflow(
                    deployment.context_window, self._overflowed
                ):
                    pending.remove(candidate)
                    continue
                if candidate.not_before > time.monotonic():
                    continue
                if self.deadline.remaining() <= 0:
                    raise self.deadline.exceeded()
                if not breakers.allow(deployment.name):
                    continue
                tried = True
                candidate.tries += 1
                self.record.attempts += 1
                started = time.monotonic()
                try:
                    attempt = await self._attempt(one, deployment, streaming)
                except Saturated:
                    breakers.release(deployment.name)
                    self._last = GatewayError(
                        429,
                        f"the deployment `{deployment.name}` is at its concurrency limit",
                        type="rate_limit_error",
                        code="concurrency_limit",
                        retry_after=1.0,
                    )
                    if candidate.tries > deployment.max_retries:
                        pending.remove(candidate)
                    continue
                except UpstreamError as exc:
                    self._failed(candidate, exc, pending)
                    continue
                except BaseException:
                    breakers.release(deployment.name)
                    raise
                breakers.success(deployment.name)
                gateway.latency.observe(deployment.name, time.monotonic() - started)
                return attempt, Served(deployment, self.record.attempts)
            await self._between_rounds(pending, tried, round_)
            round_ += 1
            tried = False
            this_round = list(pending)

    def _failed(self, candidate: _Candidate, exc: UpstreamError, pending: list[_Candidate]) -> None:
        """Account for a failed attempt: the breaker hears of it, and the candidate stays in
        play (to be retried after a wait) or leaves. Raises when the request ends with it."""
        deployment = candidate.deployment
        breakers = self.gateway.breakers
        redact(exc, deployment)
        self._last = exc
        if exc.kind in UNHEALTHY:
            breakers.failure(deployment.name)
        else:
            breakers.release(deployment.name)
        if self._deadline_hit or self.deadline.remaining() <= 0:
            raise self.deadline.exceeded() from exc
        step = after_failure(exc.kind, content_policy_fallback=self.content_policy_fallback)
        if step is Next.STOP:
            raise exc
        if step is Next.LARGER_CONTEXT:
            self._overflow_seen = True
            window = deployment.context_window
            if window is not None:
                self._overflowed = max(window, self._overflowed or 0)
        if step is not Next.RETRY_LATER or candidate.tries > deployment.max_retries:
            pending.remove(candidate)
        else:
            candidate.not_before = time.monotonic() + (exc.retry_after or 0.0)

    def _timed_out(self, budget: float, remaining: float, idle: float) -> UpstreamError:
        """The failure of an attempt whose `budget` ran out; when that was the deadline's
        `remaining` time, it ends the request."""
        self._deadline_hit = budget == remaining
        what = "stream stalled: no data" if budget == idle else "upstream did not answer"
        return UpstreamError(FailureKind.TIMEOUT, f"the {what} within {budget:g} s")

    async def _attempt(
        self,
        one: Callable[[Deployment, float], Awaitable[R]],
        deployment: Deployment,
        streaming: bool,
    ) -> _Attempt[R]:
        """One call, bounded by the deployment's timeout, the stream idle time and the
        deadline, holding a concurrency slot when the deployment has a limit."""
        idle = self._idle_s(deployment) if streaming else math.inf
        remaining = self.deadline.remaining()
        budget = min(deployment.upstream.timeout_s, remaining, idle)
        slot = self.gateway.limits.for_deployment(deployment.name, deployment.max_concurrency)
        acquired = False

        async def in_slot(slot: ConcurrencyLimit) -> R:
            nonlocal acquired
            await slot.acquire()
            acquired = True
            return await one(deployment, idle)

        try:
            call = one(deployment, idle) if slot is None else in_slot(slot)
            result = await _within(self.gateway.loop, budget, call)
        except TimeoutError as exc:
            if acquired and slot is not None:
                slot.release()
            raise self._timed_out(budget, remaining, idle) from exc
        except BaseException:
            if acquired and slot is not None:
                slot.release()
            raise
        return _Attempt(result, slot if acquired else None)

    async def _between_rounds(self, pending: list[_Candidate], tried: bool, round_: int) -> None:
        """Wait for the next round, or end the request when no round could help."""
        if not pending:
            raise self._final_error()
        now = time.monotonic()
        soonest = min(c.not_before for c in pending)
        if not tried and soonest <= now:
            # Everyone left is behind an open breaker.
            if self._last is None:
                raise GatewayError(
                    503,
                    "every deployment for this model is unavailable: its circuit breaker is open",
                    type="upstream_error",
                    code="circuit_open",
                    retry_after=self.gateway.breakers.retry_in(d.name for d in self.candidates),
                )
            raise self._final_error()
        settings = self.gateway.settings
        wait = backoff(
            round_, base=settings.retry_backoff_s, cap=settings.retry_backoff_max_s,
            rng=self.gateway.rng,
        )  # fmt: skip
        wait = max(wait, soonest - now)
        if wait >= self.deadline.remaining():
            raise self._final_error()
        await asyncio.sleep(wait)

    def _final_error(self) -> Exception:
        return self._last if self._last is not None else self.deadline.exceeded()

    async def _rest(
        self,
        stream: AsyncIterator[T],
        deployment: Deployment,
        idle: float,
        slot: ConcurrencyLimit | None,
    ) -> AsyncGenerator[T, None]:
        """The rest of a stream: each item within the idle time, credentials redacted from a
        failure that ends it, the upstream closed and the slot freed however it ends."""
        try:
            while True:
                try:
                    item = await _within(self.gateway.loop, idle, anext(stream))
                except StopAsyncIteration:
                    return
                except TimeoutError as exc:
                    raise UpstreamError(
                        FailureKind.TIMEOUT, f"the stream stalled: no data within {idle:g} s"
                    ) from exc
                yield item
        except UpstreamError as exc:
            redact(exc, deployment)
            if exc.kind in UNHEALTHY:
                self.gateway.breakers.failure(deployment.name)
            raise
        finally:
            await close_stream(stream)
            if slot is not None:
                slot.release()


class _Timer:
    """Cancels the current task after `seconds`: what `asyncio.timeout` does, with one timer
    handle and no context-manager state machine, on a path every attempt takes. The loop is
    passed in: `asyncio.get_running_loop()` makes a getpid() system call each time."""

    __slots__ = ("_handle", "_task", "fired")

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        task = asyncio.current_task(loop)
        assert task is not None
        self._task = task
        self.fired = False
        self._handle = loop.call_at(loop.time() + seconds, self._expire)

    def _expire(self) -> None:
        self.fired = True
        self._task.cancel()

    def expired(self) -> bool:
        """On a CancelledError: whether it was this timer's doing (and nobody else's), in
        which case the cancellation is taken back."""
        return self.fired and self._task.uncancel() == 0

    def cancel(self) -> None:
        self._handle.cancel()


async def _within(loop: asyncio.AbstractEventLoop, seconds: float, awaitable: Awaitable[R]) -> R:
    """`await awaitable`, or TimeoutError after `seconds`."""
    timer = _Timer(loop, seconds)
    try:
        return await awaitable
    except asyncio.CancelledError:
        if timer.expired():
            raise TimeoutError from None
        raise
    finally:
        timer.cancel()


async def close_stream(stream: AsyncIterator[object]) -> None:
    """Close an upstream stream (and so its connection) early, e.g. when the client left."""
    closer = getattr(stream, "aclose", None)
    if closer is not None:
        await closer()
