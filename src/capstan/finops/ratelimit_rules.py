"""Rate limits as plain data: which limits a call touches, the fixed window it falls in, and
the headers and errors that tell the client where it stands.

A rate limit caps requests, tokens or money per minute or per day for one key, project, team,
department or model (optionally only for that scope's calls to one model). Each capped metric
is a counter on the same stores as budgets, keyed by the rule, the metric and the window's start
(`rate:<id>:requests:29876543`), so windows roll over by key with no reset job, and replicas
sharing Redis share the limit. Windows are fixed (aligned to the minute or the UTC day), like
the reset times OpenAI reports: a client may spend a window's allowance at its very end and the
next one at the start of the next, which is the usual trade for one counter per window.

Tokens are reserved at their worst case (prompt estimate plus the output cap) and settled to
what the call used, as money is for budgets; a request counts once, failed or not.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from capstan.finops.budget_rules import Caller
from capstan.finops.money import format_usd
from capstan.gateway.errors import GatewayError

RateScopeKind = Literal["key", "project", "team", "department", "model"]
RatePeriod = Literal["minute", "day"]
Metric = Literal["requests", "tokens", "usd"]
RATE_SCOPE_KINDS: tuple[RateScopeKind, ...] = ("key", "project", "team", "department", "model")
RATE_PERIODS: tuple[RatePeriod, ...] = ("minute", "day")
METRICS: tuple[Metric, ...] = ("requests", "tokens", "usd")
PERIOD_SECONDS: Mapping[RatePeriod, int] = {"minute": 60, "day": 86_400}
# A window's counter outlives the window by this much, so a late settlement still finds it.
WINDOW_GRACE_S = 120.0
MEMO_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class RateLimitRule:
    id: uuid.UUID
    name: str
    scope_kind: RateScopeKind
    # The key, project, team or department id; None for `model`.
    scope_id: uuid.UUID | None
    # The model a `model` rule limits; for any other scope, only calls to it count (None: all).
    model: str | None
    period: RatePeriod
    requests: int | None = None
    tokens: int | None = None
    usd: int | None = None  # micro-dollars
    scope_label: str = ""

    def caps(self) -> list[RateCap]:
        """One capped counter per metric the rule limits."""
        seconds = PERIOD_SECONDS[self.period]
        found: tuple[tuple[Metric, int | None], ...] = (
            ("requests", self.requests),
            ("tokens", self.tokens),
            ("usd", self.usd),
        )
        return [
            RateCap(self, metric, limit, seconds, f"rate:{self.id}:{metric}:")
            for metric, limit in found
            if limit is not None
        ]

    def describe(self) -> str:
        where = self.scope_label or self.scope_kind
        if self.model is not None and self.scope_kind != "model":
            where += f", model {self.model}"
        return where


@dataclass(frozen=True, slots=True)
class RateCap:
    """One metric of one rule: the counter a call reserves on."""

    rule: RateLimitRule
    metric: Metric
    limit: int
    seconds: int
    prefix: str

    def window(self, epoch: float) -> tuple[str, float, float]:
        """The counter key of the window holding `epoch`, its ttl, and when the window ends."""
        start = int(epoch // self.seconds) * self.seconds
        end = float(start + self.seconds)
        return f"{self.prefix}{start}", end - epoch + WINDOW_GRACE_S, end

    def amount(self, tokens: int, usd: int) -> int:
        """What a call reserves (its worst case) or settles (its actual use) on this cap."""
        metric = self.metric
        return 1 if metric == "requests" else tokens if metric == "tokens" else usd


@dataclass(frozen=True, slots=True)
class RateLimitIndex:
    """The enabled rate limits of an organization by what they apply to."""

    by_target: Mapping[tuple[str, object], tuple[RateCap, ...]]
    rules: tuple[RateLimitRule, ...] = ()
    _memo: dict[tuple[object, ...], tuple[RateCap, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def of(cls, rules: Iterable[RateLimitRule]) -> RateLimitIndex:
        grouped: dict[tuple[str, object], list[RateCap]] = {}
        kept = tuple(rules)
        for rule in kept:
            target: object = rule.model if rule.scope_kind == "model" else rule.scope_id
            grouped.setdefault((rule.scope_kind, target), []).extend(rule.caps())
        return cls({k: tuple(v) for k, v in grouped.items()}, kept)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def for_call(self, caller: Caller, model: str) -> tuple[RateCap, ...]:
        """The caps a call by `caller` to `model` (as asked: an alias or a model) touches."""
        if not self.by_target:
            return ()
        memo_key = (caller.key_id or caller.scope, model)
        found = self._memo.get(memo_key)
        if found is None:
            found = self._find(caller, model)
            if len(self._memo) < MEMO_LIMIT:
                self._memo[memo_key] = found
        return found

    def _find(self, caller: Caller, model: str) -> tuple[RateCap, ...]:
        scope = caller.scope
        found: list[RateCap] = []
        for kind, target in (
            ("key", caller.key_id),
            ("project", scope.project_id),
            ("team", scope.team_id),
            ("department", scope.department_id),
            ("model", model),
        ):
            if target is None:
                continue
            for cap in self.by_target.get((kind, target), ()):
                if cap.rule.model is None or cap.rule.model == model:
                    found.append(cap)
        return tuple(found)


def format_reset(seconds: float) -> str:
    """A duration the way OpenAI's `x-ratelimit-reset-*` headers write it: `20ms`, `12s`,
    `6m0s`, `23h59m59s`."""
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    total = math.ceil(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def _shown(metric: Metric, amount: int) -> str:
    return format_usd(amount) if metric == "usd" else str(amount)


def rate_headers(
    caps: Iterable[RateCap], used: Iterable[int], ends: Iterable[float], now: float
) -> dict[str, str]:
    """`x-ratelimit-{limit,remaining,reset}-{requests,tokens,usd}` for the tightest cap of each
    metric (the one with the least left), from each cap's use after this call's reservation."""
    tightest: dict[str, tuple[int, RateCap, float]] = {}
    for cap, after, end in zip(caps, used, ends, strict=True):
        left = max(0, cap.limit - after)
        known = tightest.get(cap.metric)
        if known is None or left < known[0]:
            tightest[cap.metric] = (left, cap, end)
    headers: dict[str, str] = {}
    for metric, (left, cap, end) in tightest.items():
        headers[f"x-ratelimit-limit-{metric}"] = _shown(cap.metric, cap.limit)
        headers[f"x-ratelimit-remaining-{metric}"] = _shown(cap.metric, left)
        headers[f"x-ratelimit-reset-{metric}"] = format_reset(end - now)
    return headers


def rate_limited(cap: RateCap, used: int, end: float, now: float) -> GatewayError:
    """The 429 of a cap the call would pass, with `Retry-After` at the window's end."""
    rule, wait = cap.rule, end - now
    per = "minute" if rule.period == "minute" else "day"
    return GatewayError(
        429,
        f"rate limit {rule.name!r} ({rule.describe()}) allows {_shown(cap.metric, cap.limit)} "
        f"{'USD' if cap.metric == 'usd' else cap.metric} per {per}; "
        f"{_shown(cap.metric, used)} used or held in this window, which resets in "
        f"{format_reset(wait)}",
        type="rate_limit_error",
        code="rate_limit_exceeded",
        param=rule.name,
        retry_after=max(1.0, math.ceil(wait)),
        extra_headers={
            f"x-ratelimit-limit-{cap.metric}": _shown(cap.metric, cap.limit),
            f"x-ratelimit-remaining-{cap.metric}": _shown(cap.metric, max(0, cap.limit - used)),
            f"x-ratelimit-reset-{cap.metric}": format_reset(wait),
        },
    )
