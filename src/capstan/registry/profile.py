"""A reference profile of a model's training data, recorded when the model is registered.

Drift monitoring later compares production inputs against it, and model cards summarise it,
so it is plain JSON (no NaN, no infinities, no numpy scalars) that can be stored with the
version and read back by services that have neither pandas nor the training data.

Missing values are None, NaN, pandas' NA and NaT. In numeric columns ±inf count as missing
too: an infinity has no place on a histogram or in a mean, and a column that produces them
is better shown as "this share was unusable" than as a profile poisoned by them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import numpy
from numpy.typing import NDArray

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
OTHER = "__other__"

Floats = NDArray[numpy.float64]

_NONE = numpy.array([None], dtype=object)


def profile_of(sample: Any, *, bins: int = 10, top: int = 20) -> dict[str, Any]:
    """Profile every column of `sample`: a pandas DataFrame, a mapping of column name to
    values (lists, arrays, Series), or a 2-D numpy array whose columns become `f0`, `f1`, …
    (the names scikit-learn gives unnamed features).

    Numbers (not bools) get moments, quantiles and a `bins`-bin histogram over their range;
    a constant column gets the single bin [v, v]. Everything else (text, bools, categoricals,
    dates) gets the shares of its `top` most frequent values, the rest pooled under
    `"__other__"`, keyed by the value's text. Statistics that need at least one value are
    None when a column has none, and `std` is the population's (ddof=0), which is what a
    drift comparison against the reference distribution wants and is never larger than the
    column's largest magnitude, so it cannot overflow.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    if top < 0:
        raise ValueError(f"top must not be negative, got {top}")
    columns = _columns(sample)
    lengths = {len(values) for _, values in columns}
    if len(lengths) > 1:
        raise ValueError(f"columns differ in length: {sorted(lengths)}")
    rows = lengths.pop() if lengths else _rows(sample)
    profiles: dict[str, Any] = {}
    for name, values in columns:
        if name in profiles:
            raise ValueError(f"column name {name!r} appears twice")
        profiles[name] = _column_profile(values, rows, bins, top)
    return {"rows": rows, "columns": profiles}


def summary(profile: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The few numbers a model card shows per feature, so readers see the data's shape
    without the full histograms and frequency tables."""
    rows: list[dict[str, Any]] = []
    for name, column in profile["columns"].items():
        row: dict[str, Any] = {
            "name": name,
            "type": column["type"],
            "missing_share": column["missing_share"],
        }
        if column["type"] == "numeric":
            row |= {
                "mean": column["mean"],
                "min": column["min"],
                "max": column["max"],
                "median": column["quantiles"]["0.5"],
            }
        else:
            values = [value for value in column["frequencies"] if value != OTHER]
            row |= {"distinct": column["distinct"], "top": values[:3]}
        rows.append(row)
    return rows


# --- reading columns -------------------------------------------------------------------------


def _columns(sample: Any) -> list[tuple[str, Any]]:
    if all(hasattr(sample, attr) for attr in ("columns", "dtypes", "to_numpy", "iloc")):
        return [(str(name), sample.iloc[:, i]) for i, name in enumerate(sample.columns)]
    if isinstance(sample, Mapping):
        return [(str(name), values) for name, values in sample.items()]
    array = numpy.asarray(sample)
    if array.ndim != 2:
        raise ValueError(f"expected a DataFrame, a mapping or a 2-D array, got {array.ndim}-D")
    return [(f"f{i}", array[:, i]) for i in range(array.shape[1])]


def _rows(sample: Any) -> int:
    """Rows of a sample without columns: a frame or array may still have them."""
    shape = getattr(sample, "shape", None)
    return int(shape[0]) if shape else 0


def _column_profile(values: Any, rows: int, bins: int, top: int) -> dict[str, Any]:
    numbers, labels = _split(values)
    if numbers is not None:
        return _numeric(numbers, rows, bins)
    assert labels is not None
    return _categorical(labels, rows, top)


def _split(values: Any) -> tuple[Floats | None, list[Any] | None]:
    """Either the column as floats with NaN for missing, or its non-missing values as a list.

    Pandas Series are read through their own `isna`/`to_numpy`, which know the extension
    types (nullable Int64, strings, categoricals); anything else goes through numpy.
    """
    dtype = getattr(values, "dtype", None)
    if hasattr(values, "isna") and not isinstance(dtype, numpy.dtype):
        kind = getattr(dtype, "kind", "O")
        if kind in "iuf":  # pandas' categoricals are kind "O", whatever their categories
            return numpy.asarray(values.to_numpy(dtype="float64", na_value=numpy.nan)), None
        present = ~numpy.asarray(values.isna().to_numpy(), dtype=bool)
        return None, numpy.asarray(values.to_numpy(dtype=object))[present].tolist()
    array = _as_column(values)
    kind = array.dtype.kind
    if kind in "iuf":
        return array.astype(numpy.float64), None
    if kind in "Mm":
        return None, array[~numpy.isnat(array)].astype(str).tolist()
    if kind != "O":
        return None, array.tolist()
    missing = _missing(array)
    present = array[~missing].tolist()
    types = {type(value) for value in present}
    if types and all(_is_number(t) for t in types):
        try:
            return numpy.where(missing, numpy.nan, array).astype(numpy.float64), None
        except OverflowError:  # integers beyond any float: only their text can be profiled
            pass
    return None, present


def _as_column(values: Any) -> NDArray[Any]:
    """A list whose items are themselves sequences is still one column, of objects."""
    try:
        array = numpy.asarray(values)
    except ValueError:  # ragged items
        array = None
    if array is not None and array.ndim == 1:
        return array
    if not isinstance(values, list | tuple):
        raise ValueError(f"a column must be 1-D, got shape {numpy.shape(values)}")
    objects = numpy.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        objects[i] = value
    return objects


def _is_number(kind: type) -> bool:
    return issubclass(kind, int | float | numpy.integer | numpy.floating) and not issubclass(
        kind, bool | numpy.bool_
    )


def _missing(array: NDArray[Any]) -> NDArray[numpy.bool_]:
    """A value is missing when it is None or unequal to itself (NaN, NaT); pandas' NA, whose
    comparisons have no truth value, sends us to the slow path, which counts it missing."""
    try:
        unequal = numpy.asarray(array != array, dtype=numpy.bool_)
        return unequal | numpy.asarray(numpy.equal(array, _NONE), dtype=numpy.bool_)
    except (TypeError, ValueError):
        return numpy.fromiter((_is_missing(value) for value in array), numpy.bool_, len(array))


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)
    except TypeError:  # pandas.NA
        return True
    except ValueError:  # an array inside an object column: present
        return False


# --- numeric columns -------------------------------------------------------------------------


def _numeric(column: Floats, rows: int, bins: int) -> dict[str, Any]:
    # Sorted once: quantiles then come cheaply and histogram counts are binary searches.
    values = numpy.sort(column[numpy.isfinite(column)])
    count = len(values)
    profile: dict[str, Any] = {
        "type": "numeric",
        "count": count,
        "missing_share": _share(rows - count, rows),
    }
    if count == 0:
        return profile | {
            "mean": None,
            "std": None,
            "min": None,
            "max": None,
            "quantiles": {str(q): None for q in QUANTILES},
            "histogram": {"edges": [], "counts": []},
        }
    low, high = float(values[0]), float(values[-1])
    mean, std, *quantiles = _finite(values, _moments)
    # Rounding can put a mean an ulp outside the values (that of three 0.1s is above 0.1);
    # readers may rely on min <= mean, quantiles <= max.
    mean, *quantiles = (min(max(stat, low), high) for stat in (mean, *quantiles))
    return profile | {
        "mean": mean,
        "std": std,
        "min": low,
        "max": high,
        "quantiles": dict(zip((str(q) for q in QUANTILES), quantiles, strict=True)),
        "histogram": _histogram(values, low, high, bins),
    }


def _moments(values: Floats) -> Floats:
    quantiles = numpy.quantile(values, QUANTILES)
    return numpy.concatenate(([values.mean(), values.std()], quantiles))


def _finite(values: Floats, statistics: Callable[[Floats], Floats]) -> list[float]:
    """Statistics that stay finite for values near the float limits: means, spreads and
    interpolated quantiles of such values overflow in intermediate sums and differences
    even though the results are in range. Only those are recomputed on values scaled by a
    power of two, so every other statistic (all of them, for ordinary columns) is numpy's
    unchanged; scaling is exact except for values it pushes below the normal range."""
    with numpy.errstate(over="ignore", invalid="ignore"):
        results = statistics(values)
        overflowed = ~numpy.isfinite(results)
        if overflowed.any():
            exponent = int(numpy.frexp(numpy.abs(values).max())[1])
            scaled = numpy.ldexp(statistics(numpy.ldexp(values, -exponent)), exponent)
            results = numpy.where(overflowed, scaled, results)
    return [float(result) for result in results]


def _histogram(values: Floats, low: float, high: float, bins: int) -> dict[str, Any]:
    """Counts as numpy.histogram makes them (bins closed on the left, the last on both
    sides), read off the sorted values by binary search."""
    if low == high:
        edges = numpy.array([low, high])
    else:
        # Interpolating rather than stepping from `low` keeps edges finite when high - low
        # overflows; clipping and the running maximum keep rounding from ever making them
        # leave [low, high] or decrease.
        steps = numpy.linspace(0.0, 1.0, bins + 1)
        edges = numpy.maximum.accumulate(numpy.clip(low * (1.0 - steps) + high * steps, low, high))
    below = numpy.searchsorted(values, edges, side="left")
    below[-1] = len(values)
    return {"edges": [float(edge) for edge in edges], "counts": numpy.diff(below).tolist()}


# --- categorical columns ---------------------------------------------------------------------


def _categorical(values: list[Any], rows: int, top: int) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    try:
        # Counting by type and value first (hashing in C) keeps True and 1, equal in Python,
        # apart; values only meet when their labels do.
        for (_, value), n in Counter(zip(map(type, values), values, strict=True)).items():
            counts[_label(value)] += n
    except TypeError:  # unhashable values (lists, dicts) in an object column
        counts = Counter(map(_label, values))
    count = len(values)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    frequencies = {label: n / count for label, n in ranked[:top]}
    rest = sum(n for _, n in ranked[top:])
    if rest:
        frequencies[OTHER] = frequencies.get(OTHER, 0.0) + rest / count
    return {
        "type": "categorical",
        "count": count,
        "missing_share": _share(rows - count, rows),
        "distinct": len(counts),
        "frequencies": frequencies,
    }


def _label(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0
