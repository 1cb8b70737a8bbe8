"""Significance tests between the variants of a prompt experiment, and a recommended winner.

An experiment is read by people deciding whether to ship a prompt, so every number here must
be one they can act on: a test fit to each metric's shape (latencies are skewed, so they get a
rank test; means of costs, tokens and scores get Welch's t, which does not assume equal spread;
rates get a two-proportion z-test), a significance level corrected for the number of
challengers, a minimum sample size below which nothing is called significant, and no NaN ever:
a test that cannot be computed (no data, every value the same) says so in `note` and reports
None instead of a number that would poison a chart or a JSON document.

Plain functions on plain frozen data: the caller gathers the samples from request events and
feedback, this module only does the arithmetic, so it is tested without a database.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats  # type: ignore[import-untyped]

Metric = Literal["score", "positive_rate", "error_rate", "latency_ms", "cost", "tokens"]
TestName = Literal["mann-whitney-u", "welch-t", "two-proportion-z"]


@dataclass(frozen=True)
class VariantData:
    """What was observed for one prompt version, gathered by the caller.

    `latencies_ms` has one entry per served request, so its length is the number of served
    requests; `costs_micros` and `tokens` may be shorter (a cost can be unknown). Non-finite
    measurements (NaN, infinities) are ignored by the statistics: they are missing values, and
    one of them would otherwise turn every mean and test into NaN.
    """

    version: int
    latencies_ms: Sequence[float]
    costs_micros: Sequence[int]
    tokens: Sequence[int]
    scores: Sequence[float]
    positives: int = 0
    negatives: int = 0
    errors: int = 0

    def __post_init__(self) -> None:
        for name in ("positives", "negatives", "errors"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} of version {self.version} may not be negative")


@dataclass(frozen=True)
class VariantSummary:
    """The descriptive numbers of one variant; None wherever there is nothing to describe."""

    version: int
    requests: int
    errors: int
    error_rate: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_mean_ms: float | None
    cost_mean_micros: float | None
    cost_total_micros: int
    tokens_mean: float | None
    score_mean: float | None
    score_count: int
    positive_rate: float | None
    feedback_count: int
    """Binary feedback received: positives plus negatives."""


@dataclass(frozen=True)
class Comparison:
    """One metric of one challenger against the control.

    `statistic` is the control's side of the test: Mann-Whitney's U of the control's sample,
    Welch's t and the z score of control minus challenger. `better` is the observed direction
    whenever the two sides differ, significant or not: read it together with `significant`.
    `control_value` and `challenger_value` are what a reader compares: the median for latency,
    the mean for costs, tokens and scores, the proportion for rates.
    """

    metric: Metric
    test: TestName
    control: int
    challenger: int
    statistic: float | None
    p_value: float | None
    better: int | None
    significant: bool
    enough_data: bool
    note: str
    control_value: float | None
    challenger_value: float | None


@dataclass(frozen=True)
class Verdict:
    """The summaries, every comparison, and the recommendation with its reason in words."""

    summaries: tuple[VariantSummary, ...]
    comparisons: tuple[Comparison, ...]
    winner: int | None
    loser: int | None
    reason: str
    enough_data: bool


@dataclass(frozen=True, slots=True)
class _Spec:
    metric: Metric
    test: TestName
    lower_is_better: bool
    label: str
    better_phrase: str
    worse_phrase: str
    show: Callable[[float], str]


def _ms(value: float) -> str:
    return f"{value:.1f} ms"


def _usd(micros: float) -> str:
    return f"${micros / 1_000_000:.6f}"


def _plain(value: float) -> str:
    return f"{value:.1f}"


def _score(value: float) -> str:
    return f"{value:.3g}"


def _percent(value: float) -> str:
    return f"{value:.1%}"


def _fine_percent(value: float) -> str:
    return f"{value:.2%}"


# The winner rule's order: quality first, then reliability, then speed, then cost.
_SPECS: tuple[_Spec, ...] = (
    _Spec("score", "welch-t", False, "mean score", "scores higher", "scores lower", _score),
    _Spec(
        "positive_rate",
        "two-proportion-z",
        False,
        "positive feedback",
        "gets more positive feedback",
        "gets less positive feedback",
        _percent,
    ),
    _Spec(
        "error_rate",
        "two-proportion-z",
        True,
        "error rate",
        "fails less often",
        "fails more often",
        _fine_percent,
    ),
    _Spec("latency_ms", "mann-whitney-u", True, "latency p50", "is faster", "is slower", _ms),
    _Spec("cost", "welch-t", True, "mean cost", "is cheaper", "is more expensive", _usd),
    _Spec(
        "tokens", "welch-t", True, "mean tokens", "uses fewer tokens", "uses more tokens", _plain
    ),
)
METRICS: tuple[Metric, ...] = tuple(spec.metric for spec in _SPECS)
"""The metrics in the order the winner rule reads them."""

_TEST_NAMES: dict[TestName, str] = {
    "mann-whitney-u": "Mann-Whitney U",
    "welch-t": "Welch's t",
    "two-proportion-z": "two-proportion z",
}


def summarise(data: VariantData) -> VariantSummary:
    """The descriptive numbers of one variant, as shown next to the tests."""
    served = len(data.latencies_ms)
    requests = served + data.errors
    latencies = _finite(data.latencies_ms)
    costs = _finite(data.costs_micros)
    tokens = _finite(data.tokens)
    scores = _finite(data.scores)
    feedback = data.positives + data.negatives
    return VariantSummary(
        version=data.version,
        requests=requests,
        errors=data.errors,
        error_rate=data.errors / requests if requests else None,
        latency_p50_ms=_percentile(latencies, 50),
        latency_p95_ms=_percentile(latencies, 95),
        latency_mean_ms=_mean(latencies),
        cost_mean_micros=_mean(costs),
        cost_total_micros=sum(data.costs_micros),
        tokens_mean=_mean(tokens),
        score_mean=_mean(scores),
        score_count=len(scores),
        positive_rate=data.positives / feedback if feedback else None,
        feedback_count=feedback,
    )


def analyse(
    variants: Sequence[VariantData], *, alpha: float = 0.05, min_samples: int = 30
) -> Verdict:
    """Compare every challenger with the control (the first variant) and recommend a winner.

    Each challenger is tested against the control on every metric, at `alpha` divided by the
    number of tests (challengers times metrics, Bonferroni): the first significant metric decides,
    so each metric tested is one more chance of a fluke, and without the correction two
    identical prompts got a "winner" about one time in five. A test
    is significant only when p is below that level and both sides have at least `min_samples`
    observations of the metric (requests for latency and error rate, feedback for scores and
    the positive rate): a small sample's p-value is too easily a fluke to ship a prompt on.

    The winner rule puts quality first, then reliability, then speed, then cost: the metrics
    are read in the order score, positive rate, error rate, latency, cost, tokens, and the
    first one with a significant difference decides; later metrics are not consulted, so a
    prompt that answers better wins even when it is slower or dearer.
    With two variants the better one on that metric wins and the other loses. With more, the
    winner is the challenger with the best value among those significantly better than the
    control (the control itself when none is), and the loser is the challenger with the worst
    value among those significantly worse (the control when none is). No significant metric
    means no winner yet, and the reason lists the metrics that still lack data.

    `enough_data` says whether every variant has served `min_samples` requests.
    """
    if not variants:
        raise ValueError("an experiment needs at least one variant to analyse")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie strictly between 0 and 1, not {alpha}")
    if min_samples < 1:
        raise ValueError(f"min_samples must be at least 1, not {min_samples}")
    versions = [variant.version for variant in variants]
    if len(set(versions)) != len(versions):
        raise ValueError(f"each variant must be a different version: {versions}")

    control, challengers = variants[0], variants[1:]
    level = alpha / (max(1, len(challengers)) * len(_SPECS))
    comparisons = tuple(
        _compare(spec, control, challenger, level, min_samples)
        for spec in _SPECS
        for challenger in challengers
    )
    winner, loser, reason = _decide(control.version, comparisons, len(variants), min_samples)
    return Verdict(
        summaries=tuple(summarise(variant) for variant in variants),
        comparisons=comparisons,
        winner=winner,
        loser=loser,
        reason=reason,
        enough_data=all(len(variant.latencies_ms) >= min_samples for variant in variants),
    )


def _decide(
    control: int, comparisons: Sequence[Comparison], count: int, min_samples: int
) -> tuple[int | None, int | None, str]:
    if count == 1:
        return None, None, "only one variant: nothing to compare it with"
    for spec in _SPECS:
        decisive = [
            c
            for c in comparisons
            if c.metric == spec.metric and c.significant and c.better is not None
        ]
        if not decisive:
            continue
        sign = 1.0 if spec.lower_is_better else -1.0

        def rank(c: Comparison, sign: float = sign) -> tuple[float, float]:
            value = c.challenger_value if c.challenger_value is not None else math.inf * sign
            return sign * value, c.p_value if c.p_value is not None else 1.0

        ahead = sorted((c for c in decisive if c.better == c.challenger), key=rank)
        behind = sorted((c for c in decisive if c.better == c.control), key=rank)
        best = ahead[0] if ahead else None
        worst = behind[-1] if behind else None
        sentences = [_sentence(spec, c) for c in (best, worst) if c is not None]
        return (
            best.challenger if best else control,
            worst.challenger if worst else control,
            "; ".join(sentences),
        )
    lacking = [
        spec.metric
        for spec in _SPECS
        if any(c.metric == spec.metric and not c.enough_data for c in comparisons)
    ]
    if not lacking:
        return None, None, "no significant difference yet"
    return (
        None,
        None,
        f"no significant difference yet; too little data (under {min_samples} per variant) "
        f"on {', '.join(lacking)}",
    )


def _sentence(spec: _Spec, c: Comparison) -> str:
    phrase = spec.better_phrase if c.better == c.challenger else spec.worse_phrase
    assert c.challenger_value is not None
    assert c.control_value is not None
    assert c.p_value is not None
    return (
        f"v{c.challenger} {phrase}: {spec.label} {spec.show(c.challenger_value)} against "
        f"{spec.show(c.control_value)} for v{c.control} "
        f"({_TEST_NAMES[spec.test]}, p = {_p_text(c.p_value)})"
    )


def _p_text(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-300 else "< 1e-300"


def _compare(
    spec: _Spec, control: VariantData, challenger: VariantData, level: float, min_samples: int
) -> Comparison:
    notes: list[str] = []
    if spec.test == "two-proportion-z":
        (x1, n1), (x2, n2) = _counts(spec.metric, control), _counts(spec.metric, challenger)
        statistic, p, direction = _two_proportion(x1, n1, x2, n2, notes)
        values = (x1 / n1 if n1 else None, x2 / n2 if n2 else None)
    else:
        a, b = _values(spec.metric, control), _values(spec.metric, challenger)
        n1, n2 = len(a), len(b)
        if spec.test == "mann-whitney-u":
            statistic, p, direction = _mann_whitney(a, b, notes)
            values = (_percentile(a, 50), _percentile(b, 50))
        else:
            statistic, p, direction = _welch(a, b, notes)
            values = (_mean(a), _mean(b))
    enough = n1 >= min_samples and n2 >= min_samples
    if not enough:
        notes.insert(0, f"needs {min_samples} samples per variant; have {n1} and {n2}")
    significant = enough and p is not None and p < level
    if enough and p is not None:
        notes.append(f"{'significant' if significant else 'not significant'} at alpha {level:.3g}")
    better = None
    if direction != 0:
        control_lower = direction < 0
        better = control.version if control_lower == spec.lower_is_better else challenger.version
    return Comparison(
        metric=spec.metric,
        test=spec.test,
        control=control.version,
        challenger=challenger.version,
        statistic=statistic,
        p_value=p,
        better=better,
        significant=significant,
        enough_data=enough,
        note="; ".join(notes),
        control_value=values[0],
        challenger_value=values[1],
    )


def _values(metric: Metric, data: VariantData) -> list[float]:
    if metric == "latency_ms":
        return _finite(data.latencies_ms)
    if metric == "cost":
        return _finite(data.costs_micros)
    if metric == "tokens":
        return _finite(data.tokens)
    return _finite(data.scores)


def _counts(metric: Metric, data: VariantData) -> tuple[int, int]:
    """Successes and trials of a rate."""
    if metric == "positive_rate":
        return data.positives, data.positives + data.negatives
    return data.errors, len(data.latencies_ms) + data.errors


# Each test returns (statistic, p-value, direction): direction is -1 when the control's values
# are lower, 1 when higher, 0 when no direction shows; a test it cannot compute adds a note.
_Outcome = tuple[float | None, float | None, int]


def _mann_whitney(a: list[float], b: list[float], notes: list[str]) -> _Outcome:
    if not a or not b:
        return None, None, 0
    if min(a) == max(a) == min(b) == max(b):
        notes.append("every value is the same; nothing to test")
        return None, None, 0
    result = stats.mannwhitneyu(a, b, alternative="two-sided")
    u = _finite_or_none(result.statistic)
    half = len(a) * len(b) / 2
    direction = 0 if u is None or u == half else (-1 if u < half else 1)
    return u, _probability(result.pvalue), direction


def _welch(a: list[float], b: list[float], notes: list[str]) -> _Outcome:
    if not a or not b:
        return None, None, 0
    mean_a, mean_b = math.fsum(a) / len(a), math.fsum(b) / len(b)
    direction = 0 if mean_a == mean_b else (-1 if mean_a < mean_b else 1)
    if len(a) < 2 or len(b) < 2:
        notes.append("Welch's t needs at least 2 samples per variant")
        return None, None, direction
    if min(a) == max(a) and min(b) == max(b):
        notes.append(
            "every value is the same; nothing to test"
            if mean_a == mean_b
            else "no variance within either variant; cannot test"
        )
        return None, None, direction
    # One constant side is a valid Welch test (fixed-length outputs have constant tokens), but
    # scipy warns of "precision loss" for a constant sample away from 0. The test does not move
    # with a shift of both samples, so the constant side is moved to 0, where it does not warn.
    shift = a[0] if min(a) == max(a) else b[0] if min(b) == max(b) else 0.0
    result = stats.ttest_ind([x - shift for x in a], [x - shift for x in b], equal_var=False)
    return _finite_or_none(result.statistic), _probability(result.pvalue), direction


def _two_proportion(x1: int, n1: int, x2: int, n2: int, notes: list[str]) -> _Outcome:
    if n1 == 0 or n2 == 0:
        return None, None, 0
    p1, p2 = x1 / n1, x2 / n2
    direction = 0 if p1 == p2 else (-1 if p1 < p2 else 1)
    pooled = (x1 + x2) / (n1 + n2)
    if pooled in (0.0, 1.0):
        notes.append(f"every outcome is the same ({pooled:.0%}); nothing to test")
        return None, None, direction
    z = (p1 - p2) / math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    return z, _probability(2.0 * stats.norm.sf(abs(z))), direction


def _finite(values: Sequence[float]) -> list[float]:
    return [float(value) for value in values if math.isfinite(value)]


def _finite_or_none(value: float) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _probability(value: float) -> float | None:
    p = _finite_or_none(value)
    return None if p is None else min(1.0, max(0.0, p))


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None
