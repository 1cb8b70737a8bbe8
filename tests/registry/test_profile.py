"""Reference profiles of training data, as drift monitoring and model cards read them."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import numpy
import pandas
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capstan.registry.profile import OTHER, QUANTILES, profile_of, summary


def _numbers(node: Any) -> Iterator[float]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _numbers(value)
    elif isinstance(node, list):
        for value in node:
            yield from _numbers(value)
    elif isinstance(node, int | float):
        yield node


def _plain(node: Any) -> bool:
    """Only JSON's own types: no numpy scalars hiding behind equal values."""
    if isinstance(node, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in node.items())
    if isinstance(node, list):
        return all(_plain(v) for v in node)
    return node is None or type(node) in (str, int, float, bool)


# --- numeric columns -------------------------------------------------------------------------


def test_numeric_quantiles_are_numpys() -> None:
    values = numpy.random.default_rng(1).normal(10, 3, size=1_000)

    column = profile_of({"x": values})["columns"]["x"]

    expected = numpy.quantile(values, QUANTILES)
    assert column["quantiles"] == {
        str(q): float(v) for q, v in zip(QUANTILES, expected, strict=True)
    }


def test_numeric_moments_and_range() -> None:
    column = profile_of({"x": [1.0, 2.0, 3.0, 6.0]})["columns"]["x"]

    assert column["type"] == "numeric"
    assert (column["mean"], column["std"]) == (3.0, pytest.approx(numpy.std([1, 2, 3, 6])))
    assert (column["min"], column["max"]) == (1.0, 6.0)


def test_histogram_counts_sum_to_the_values_present() -> None:
    values = numpy.random.default_rng(2).exponential(size=500)
    values[::10] = numpy.nan

    histogram = profile_of({"x": values}, bins=7)["columns"]["x"]["histogram"]

    assert len(histogram["edges"]) == 8
    assert len(histogram["counts"]) == 7
    assert sum(histogram["counts"]) == 450


def test_histogram_counts_are_numpys_for_the_same_edges() -> None:
    values = numpy.random.default_rng(3).normal(size=2_000)

    histogram = profile_of({"x": values})["columns"]["x"]["histogram"]

    expected, _ = numpy.histogram(values, bins=histogram["edges"])
    assert histogram["counts"] == expected.tolist()
    assert (histogram["edges"][0], histogram["edges"][-1]) == (values.min(), values.max())


def test_a_constant_column_has_one_bin() -> None:
    column = profile_of({"x": [4, 4, 4]})["columns"]["x"]

    assert column["histogram"] == {"edges": [4.0, 4.0], "counts": [3]}
    assert column["std"] == 0.0


def test_missing_numbers_are_counted_not_profiled() -> None:
    column = profile_of({"x": [1.0, None, float("nan"), 3.0]})["columns"]["x"]

    assert (column["count"], column["missing_share"]) == (2, 0.5)
    assert column["mean"] == 2.0


def test_infinities_count_as_missing() -> None:
    column = profile_of({"x": [1.0, math.inf, -math.inf, 3.0]})["columns"]["x"]

    assert (column["count"], column["missing_share"], column["max"]) == (2, 0.5, 3.0)


def test_an_all_missing_numeric_column_has_no_statistics_and_no_nan() -> None:
    column = profile_of({"x": numpy.full(4, numpy.nan)})["columns"]["x"]

    assert column["missing_share"] == 1.0
    assert column["count"] == 0
    assert (column["mean"], column["std"], column["min"], column["max"]) == (None,) * 4
    assert set(column["quantiles"].values()) == {None}
    assert column["histogram"] == {"edges": [], "counts": []}


def test_values_near_the_float_limits_give_finite_statistics() -> None:
    column = profile_of({"x": [-1.7e308, 1.7e308, 1.7e308]})["columns"]["x"]

    assert all(math.isfinite(n) for n in _numbers(column))
    assert column["mean"] == pytest.approx(1.7e308 / 3)


def test_nullable_pandas_integers_are_numeric_with_missing_values() -> None:
    frame = pandas.DataFrame({"n": pandas.array([1, None, 3, None], dtype="Int64")})

    column = profile_of(frame)["columns"]["n"]

    assert (column["type"], column["count"], column["missing_share"]) == ("numeric", 2, 0.5)


def test_python_numbers_mixed_with_none_are_numeric() -> None:
    assert profile_of({"x": [1, None, 2.5]})["columns"]["x"]["type"] == "numeric"


# --- categorical columns ---------------------------------------------------------------------


def test_category_shares_are_shares_of_the_values_present() -> None:
    column = profile_of({"c": ["a", "b", "a", None, "a", "c"]})["columns"]["c"]

    assert column["type"] == "categorical"
    assert (column["count"], column["distinct"]) == (5, 3)
    assert column["missing_share"] == pytest.approx(1 / 6)
    assert column["frequencies"] == {"a": 0.6, "b": 0.2, "c": 0.2}


def test_values_past_top_are_pooled_as_other() -> None:
    values = ["a"] * 5 + ["b"] * 4 + ["c"] * 3 + ["d"] * 2 + ["e"]

    column = profile_of({"c": values}, top=2)["columns"]["c"]

    assert list(column["frequencies"]) == ["a", "b", OTHER]
    assert column["frequencies"][OTHER] == pytest.approx(6 / 15)
    assert column["distinct"] == 5


def test_other_is_absent_when_every_value_fits_in_top() -> None:
    column = profile_of({"c": ["a", "b"]}, top=2)["columns"]["c"]

    assert OTHER not in column["frequencies"]


def test_bools_are_categorical() -> None:
    column = profile_of({"b": [True, False, True, True]})["columns"]["b"]

    assert column["type"] == "categorical"
    assert column["frequencies"] == {"True": 0.75, "False": 0.25}


def test_pandas_missing_markers_are_missing_in_text_columns() -> None:
    values = ["x", None, numpy.nan, pandas.NA, pandas.NaT, "y"]

    column = profile_of({"c": values})["columns"]["c"]

    assert (column["count"], column["missing_share"]) == (2, pytest.approx(4 / 6))


def test_a_dataframe_profiles_strings_categoricals_and_numbers() -> None:
    frame = pandas.DataFrame(
        {
            "city": ["Oslo", "Lima", None, "Oslo"],
            "grade": pandas.Categorical(["A", "B", "A", None]),
            "age": [31, 45, 28, 52],
        }
    )

    columns = profile_of(frame)["columns"]

    assert {name: c["type"] for name, c in columns.items()} == {
        "city": "categorical",
        "grade": "categorical",
        "age": "numeric",
    }
    assert columns["grade"]["frequencies"] == {"A": pytest.approx(2 / 3), "B": pytest.approx(1 / 3)}
    assert columns["city"]["missing_share"] == 0.25


def test_an_all_missing_text_column_has_no_frequencies() -> None:
    column = profile_of({"c": [None, None]})["columns"]["c"]

    assert column == {
        "type": "categorical",
        "count": 0,
        "missing_share": 1.0,
        "distinct": 0,
        "frequencies": {},
    }


# --- samples and output ----------------------------------------------------------------------


def test_a_2d_array_names_its_columns_like_scikit_learn() -> None:
    profile = profile_of(numpy.arange(12.0).reshape(4, 3))

    assert profile["rows"] == 4
    assert list(profile["columns"]) == ["f0", "f1", "f2"]


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="length"):
        profile_of({"a": [1, 2], "b": [1]})


def test_a_profile_is_plain_json_without_nan() -> None:
    frame = pandas.DataFrame(
        {
            "x": [1.5, numpy.nan, math.inf, 2.0],
            "empty": [numpy.nan] * 4,
            "c": ["a", None, "b", "a"],
            "n": pandas.array([1, None, 2, 2], dtype="Int64"),
        }
    )

    profile = profile_of(frame)

    json.dumps(profile, allow_nan=False)
    assert _plain(profile)
    assert all(math.isfinite(n) for n in _numbers(profile))


def test_summary_has_one_row_per_column_for_a_model_card() -> None:
    profile = profile_of({"x": [1.0, 2.0, 3.0, None], "c": ["a", "a", "b", "c"]}, top=2)

    assert summary(profile) == [
        {"name": "x", "type": "numeric", "missing_share": 0.25, "mean": 2.0, "min": 1.0,
         "max": 3.0, "median": 2.0},
        {"name": "c", "type": "categorical", "missing_share": 0.0, "distinct": 3,
         "top": ["a", "b"]},
    ]  # fmt: skip


# --- properties ------------------------------------------------------------------------------

_floats = st.floats(allow_nan=True, allow_infinity=True)
_labels = st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d", "e"]), st.text(max_size=3))


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=0, max_value=30).flatmap(
        lambda n: st.tuples(
            st.lists(_floats, min_size=n, max_size=n),
            st.lists(_labels, min_size=n, max_size=n),
        )
    ),
    st.integers(min_value=1, max_value=12),
    st.integers(min_value=0, max_value=4),
)
def test_any_sample_profiles_to_finite_json_with_whole_shares(
    columns: tuple[list[float], list[str | None]], bins: int, top: int
) -> None:
    numbers, labels = columns

    profile = profile_of({"x": numbers, "c": labels}, bins=bins, top=top)

    json.dumps(profile, allow_nan=False)
    assert all(math.isfinite(n) for n in _numbers(profile))
    x, c = profile["columns"]["x"], profile["columns"]["c"]
    assert sum(x["histogram"]["counts"]) == x["count"]
    assert x["histogram"]["edges"] == sorted(x["histogram"]["edges"])
    if c["count"]:
        assert sum(c["frequencies"].values()) == pytest.approx(1.0)
    if x["count"]:
        assert all(x["min"] <= q <= x["max"] for q in x["quantiles"].values())
        assert x["min"] <= x["mean"] <= x["max"]


def test_the_mean_of_equal_values_is_that_value() -> None:
    assert profile_of({"x": [0.1] * 3})["columns"]["x"]["mean"] == 0.1
