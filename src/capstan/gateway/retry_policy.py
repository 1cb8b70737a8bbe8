"""What to do after a failed attempt: pure decisions, tested without a server.

A failure is one of three things for the deployment that returned it:
- transient (429, overloaded, 5xx, timeout, lost connection): worth another try on the same
  deployment after a backoff, and meanwhile another candidate may serve;
- the deployment's own fault (our credentials, an unknown model, an unreadable answer): no
  retry there, but another candidate may serve;
- the request's fault (bad input, a context or content-policy refusal): no other deployment
  would do better, so it ends the request, except where the alias asks otherwise (a larger
  context window, a content-policy fallback).
"""

from __future__ import annotations

import random
from enum import Enum

from capstan.gateway.providers.base import FailureKind

TRANSIENT = frozenset(
    {
        FailureKind.RATE_LIMITED,
        FailureKind.OVERLOADED,
        FailureKind.SERVER,
        FailureKind.TIMEOUT,
        FailureKind.CONNECTION,
    }
)
DEPLOYMENT_FAULT = frozenset(
    {
        FailureKind.AUTHENTICATION,
        FailureKind.PERMISSION,
        FailureKind.NOT_FOUND,
        FailureKind.MALFORMED,
    }
)
# Failures that say something about the deployment's health (the rest say nothing: a 400 is
# an answer, so it neither opens nor closes a breaker).
UNHEALTHY = TRANSIENT | DEPLOYMENT_FAULT


class Next(Enum):
    RETRY_LATER = "retry later"  # transient: this deployment may be tried again after a wait
    DROP = "drop"  # this deployment is done for this request; others may serve
    LARGER_CONTEXT = "larger context"  # only candidates with a larger window may serve
    STOP = "stop"  # the request itself failed: return the error


def after_failure(kind: FailureKind, *, content_policy_fallback: bool) -> Next:
    if kind in TRANSIENT:
        return Next.RETRY_LATER
    if kind in DEPLOYMENT_FAULT:
        return Next.DROP
    if kind is FailureKind.CONTEXT_LENGTH:
        return Next.LARGER_CONTEXT
    if kind is FailureKind.CONTENT_POLICY and content_policy_fallback:
        return Next.DROP
    return Next.STOP


def backoff(round_: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter (AWS's recipe): uniform in [0, min(cap, base·2^n)],
    so clients that failed together do not retry together."""
    return rng.uniform(0.0, min(cap, base * (2**round_)))


def fits_after_overflow(window: int | None, overflowed: int | None) -> bool:
    """May a deployment with context `window` serve a prompt that overflowed `overflowed`?
    Unknown windows are given the chance; a known one must be strictly larger."""
    if window is None or overflowed is None:
        return True
    return window > overflowed
