"""Significance tests between experiment variants, and the winner rule users read."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import astuple

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from capstan.prompts.experiment_stats import (
    Comparison,
    Metric,
    VariantData,
    Verdict,
    analyse,
    summarise,
)

N = 200


def latencies(seed: int, *, slower_by: float = 0.0) -> list[float]:
    rng = np.random.default_rng(seed)
    values: list[float] = (
        rng.lognormal(mean=math.log(100), sigma=0.4, size=N) + slower_by
    ).tolist()
    return values


def variant(
    version: int,
    seed: int,
    *,
    slower_by: float = 0.0,
    score: float | None = None,
    positives: int = 0,
    negatives: int = 0,
    errors: int = 0,
) -> VariantData:
    """N served requests with the same cost, token and score distributions whatever the seed."""
    rng = np.random.default_rng(seed + 1000)
    return VariantData(
        version=version,
        latencies_ms=latencies(seed, slower_by=slower_by),
        costs_micros=rng.integers(900, 1100, size=N).tolist(),
        tokens=rng.integers(400, 600, size=N).tolist(),
        scores=[] if score is None else rng.normal(score, 0.8, size=N).tolist(),
        positives=positives,
        negatives=negatives,
        errors=errors,
    )


def rates(version: int, *, positives: int = 0, negatives: int = 0, errors: int = 0) -> VariantData:
    """Only counts: every latency the same, so nothing but the rates can differ."""
    return VariantData(
        version=version,
        latencies_ms=[50.0] * N,
        costs_micros=[],
        tokens=[],
        scores=[],
        positives=positives,
        negatives=negatives,
        errors=errors,
    )


def comparison(verdict: Verdict, metric: Metric, challenger: int = 2) -> Comparison:
    (found,) = (c for c in verdict.comparisons if c.metric == metric and c.challenger == challenger)
    return found


def floats_of(value: object) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, tuple):
        return [number for item in value for number in floats_of(item)]
    return []


def assert_no_nan(verdict: Verdict) -> None:
    assert not any(math.isnan(number) for number in floats_of(astuple(verdict)))
    texts = [verdict.reason, *(c.note for c in verdict.comparisons)]
    assert not any(re.search(r"\bnan\b|\binf\b", text, re.IGNORECASE) for text in texts)


def test_identical_distributions_name_no_winner() -> None:
    verdict = analyse([variant(1, seed=1, score=4.0), variant(2, seed=2, score=4.0)])

    assert verdict.winner is None
    assert verdict.loser is None
    assert verdict.reason.startswith("no significant difference yet")
    assert verdict.enough_data


def test_a_slower_variant_loses_on_latency() -> None:
    verdict = analyse([variant(1, seed=1), variant(2, seed=2, slower_by=30.0)])

    assert verdict.winner == 1
    assert verdict.loser == 2
    assert verdict.reason.startswith("v2 is slower: latency p50")
    assert "Mann-Whitney U" in verdict.reason
    latency = comparison(verdict, "latency_ms")
    assert latency.test == "mann-whitney-u"
    assert latency.significant
    assert latency.better == 1


def test_a_higher_score_wins_even_when_slower() -> None:
    verdict = analyse(
        [variant(1, seed=1, score=3.5), variant(2, seed=2, slower_by=30.0, score=4.0)]
    )

    assert comparison(verdict, "latency_ms").significant
    assert verdict.winner == 2
    assert verdict.loser == 1
    assert verdict.reason.startswith("v2 scores higher: mean score")


def test_more_positive_feedback_is_significant_on_the_positive_rate() -> None:
    verdict = analyse([rates(1, positives=80, negatives=20), rates(2, positives=60, negatives=40)])

    positive = comparison(verdict, "positive_rate")
    assert positive.test == "two-proportion-z"
    assert positive.significant
    assert positive.better == 1
    assert positive.p_value == pytest.approx(0.002, abs=0.0005)
    assert (verdict.winner, verdict.loser) == (1, 2)
    assert "positive feedback 60.0% against 80.0% for v1" in verdict.reason


def test_a_higher_error_rate_loses() -> None:
    verdict = analyse([rates(1, errors=2), rates(2, errors=30)])

    errors = comparison(verdict, "error_rate")
    assert errors.significant
    assert errors.better == 1
    assert (verdict.winner, verdict.loser) == (1, 2)
    assert verdict.reason.startswith("v2 fails more often: error rate")


def test_too_few_samples_are_never_significant_and_say_how_many_are_needed() -> None:
    control = VariantData(1, [10.0 + i for i in range(12)], [], [], [])
    challenger = VariantData(2, [500.0 + i for i in range(40)], [], [], [])

    verdict = analyse([control, challenger], min_samples=30)

    latency = comparison(verdict, "latency_ms")
    assert latency.p_value is not None
    assert latency.p_value < 0.05
    assert not latency.significant
    assert not latency.enough_data
    assert latency.note.startswith("needs 30 samples per variant; have 12 and 40")
    assert verdict.winner is None
    assert not verdict.enough_data
    assert "too little data" in verdict.reason
    assert "latency_ms" in verdict.reason


def test_each_test_runs_at_alpha_divided_by_the_number_of_tests() -> None:
    # 100/200 against 127/200: p about 0.0064, under 0.05 / 6 tests, over 0.05 / 12.
    control, better = rates(1, positives=100, negatives=100), rates(2, positives=127, negatives=73)
    same = rates(3, positives=100, negatives=100)

    alone = analyse([control, better])
    with_another = analyse([control, better, same])

    assert comparison(alone, "positive_rate").significant
    assert not comparison(with_another, "positive_rate").significant
    assert "alpha 0.00417" in comparison(with_another, "positive_rate").note
    assert with_another.winner is None


def test_with_three_variants_the_fastest_wins_and_the_slowest_loses() -> None:
    verdict = analyse(
        [
            variant(1, seed=1, slower_by=30.0),
            variant(2, seed=2, slower_by=60.0),
            variant(3, seed=3),
        ]
    )

    assert len(verdict.comparisons) == 2 * 6
    assert (verdict.winner, verdict.loser) == (3, 2)
    assert "v3 is faster" in verdict.reason
    assert "v2 is slower" in verdict.reason


def test_with_three_variants_the_control_wins_when_no_challenger_beats_it() -> None:
    verdict = analyse(
        [variant(1, seed=1), variant(2, seed=2, slower_by=60.0), variant(3, seed=3, slower_by=30.0)]
    )

    assert (verdict.winner, verdict.loser) == (1, 2)


def test_zero_variance_is_not_tested_and_leaks_no_nan() -> None:
    same = VariantData(1, [80.0] * 50, [1000] * 50, [500] * 50, [1.0] * 50, positives=50)
    other = VariantData(2, [80.0] * 50, [2000] * 50, [500] * 50, [1.0] * 50, positives=50)

    verdict = analyse([same, other])

    assert_no_nan(verdict)
    for c in verdict.comparisons:
        assert c.p_value is None
        assert not c.significant
    assert comparison(verdict, "latency_ms").note == "every value is the same; nothing to test"
    assert comparison(verdict, "cost").note == "no variance within either variant; cannot test"
    assert comparison(verdict, "cost").better == 1
    assert comparison(verdict, "positive_rate").note.startswith("every outcome is the same")
    assert verdict.winner is None


def test_empty_variants_leak_no_nan() -> None:
    empty = [VariantData(version, [], [], [], []) for version in (1, 2, 3)]

    verdict = analyse(empty)

    assert_no_nan(verdict)
    assert verdict.winner is None
    assert not verdict.enough_data
    assert all(not c.significant and c.p_value is None for c in verdict.comparisons)
    assert verdict.summaries[0].latency_p50_ms is None
    assert verdict.summaries[0].error_rate is None


def test_non_finite_measurements_are_ignored() -> None:
    data = VariantData(1, [10.0, math.nan, 30.0], [100], [5], [math.inf, 2.0])

    summary = summarise(data)

    assert summary.requests == 3
    assert summary.latency_mean_ms == 20.0
    assert summary.score_mean == 2.0
    assert summary.score_count == 1


counts = st.integers(0, 60)
samples = st.lists(st.sampled_from([0.0, 1.0, 2.5, 1e9, math.nan]), max_size=40)
variants_data = st.builds(
    VariantData,
    version=st.just(0),
    latencies_ms=samples,
    costs_micros=st.lists(st.sampled_from([0, 7, 1_000_000]), max_size=40),
    tokens=st.lists(st.integers(0, 3), max_size=40),
    scores=samples,
    positives=counts,
    negatives=counts,
    errors=counts,
)


@given(st.lists(variants_data, min_size=1, max_size=4), st.integers(1, 10))
def test_no_input_makes_a_nan_or_a_p_value_outside_0_and_1(
    data: Sequence[VariantData], min_samples: int
) -> None:
    numbered = [VariantData(i, *astuple(d)[1:]) for i, d in enumerate(data)]

    verdict = analyse(numbered, min_samples=min_samples)

    assert_no_nan(verdict)
    assert all(0.0 <= c.p_value <= 1.0 for c in verdict.comparisons if c.p_value is not None)
    if verdict.winner is None:
        assert verdict.loser is None


def test_a_summary_counts_errors_among_requests() -> None:
    data = VariantData(
        7,
        latencies_ms=[float(ms) for ms in range(1, 101)],
        costs_micros=[100, 300],
        tokens=[10, 20, 30],
        scores=[1.0, 0.0],
        positives=3,
        negatives=1,
        errors=25,
    )

    summary = summarise(data)

    assert summary.requests == 125
    assert summary.error_rate == 0.2
    assert summary.latency_p50_ms == pytest.approx(50.5)
    assert summary.latency_p95_ms == pytest.approx(95.05)
    assert summary.cost_mean_micros == 200.0
    assert summary.cost_total_micros == 400
    assert summary.tokens_mean == 20.0
    assert (summary.score_mean, summary.score_count) == (0.5, 2)
    assert (summary.positive_rate, summary.feedback_count) == (0.75, 4)


def test_a_single_variant_has_nothing_to_be_compared_with() -> None:
    verdict = analyse([variant(1, seed=1)])

    assert verdict.comparisons == ()
    assert verdict.winner is None
    assert "nothing to compare" in verdict.reason


def test_two_variants_of_the_same_version_are_refused() -> None:
    with pytest.raises(ValueError, match="different version"):
        analyse([variant(1, seed=1), variant(1, seed=2)])


def test_no_variants_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one variant"):
        analyse([])


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="errors of version 1 may not be negative"):
        VariantData(1, [], [], [], [], errors=-1)
