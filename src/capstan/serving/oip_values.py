"""Tensor values of the Open Inference Protocol: JSON lists to numpy arrays of a datatype, and
the readable reason a value does not fit, for the error that names it.

Numeric data goes through one `numpy.asarray`; per-element Python runs only to find the value
to name in an error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from capstan.registry.inference import numpy_dtype
from capstan.registry.signature import DATATYPES

Array = npt.NDArray[Any]

# BYTES are object arrays of `str` (what JSON carries and what tabular models want), not
# Triton's `bytes`.
NUMPY: dict[str, np.dtype[Any]] = {name: numpy_dtype(name) for name in DATATYPES}
DATATYPE_OF: dict[np.dtype[Any], str] = {
    dtype: name for name, dtype in NUMPY.items() if name != "BYTES"
}
INTEGER = frozenset(name for name, dtype in NUMPY.items() if dtype.kind in "iu")
FLOAT = frozenset(("FP16", "FP32", "FP64"))
# The array kinds `numpy.asarray` may infer from JSON values that each datatype accepts. JSON
# booleans count as 0/1 in numeric tensors (numpy folds them into mixed lists anyway, so
# refusing only all-boolean data would be inconsistent); BOOL takes only true/false.
ACCEPTS: dict[str, str] = {
    "BOOL": "b",
    **{name: "biu" for name in INTEGER},
    **{name: "biuf" for name in FLOAT},
}


def to_array(data: Sequence[Any], datatype: str, ndim: int | None = None) -> Array | None:
    """The JSON values as an array of `datatype`'s dtype, or None when one does not fit (the
    caller then finds it, for the message). numpy infers the dtype first, so a string or null
    in numeric data shows as a non-numeric kind instead of being parsed or wrapped.
    `ndim`, when given, is the nesting the values must have: a list where a scalar belongs
    would otherwise just add a dimension."""
    if datatype == "BYTES":
        try:
            array = np.array(data, dtype=object)
        except ValueError:  # ragged in a way even an object array cannot hold
            return None
        if ndim is not None and array.ndim != ndim:
            return None
        return array if all(type(value) is str for value in array.flat) else None
    try:
        inferred = np.asarray(data)
    except (ValueError, TypeError):  # ragged, or a type numpy cannot hold
        return None
    if ndim is not None and inferred.ndim != ndim:
        return None
    if inferred.size == 0:
        return inferred.astype(NUMPY[datatype])
    if inferred.dtype.kind not in ACCEPTS[datatype]:
        return None
    return cast(inferred, datatype)


def cast(array: Array, datatype: str) -> Array | None:
    """`array` as `datatype`, or None if a value is out of its range, which numpy would wrap
    around (integers) or turn into infinity (floats, with a mere warning)."""
    dtype = NUMPY[datatype]
    if array.dtype == dtype:
        return array
    if array.size and datatype in INTEGER and not np.can_cast(array.dtype, dtype, "safe"):
        limits = np.iinfo(dtype)
        if array.min() < limits.min or array.max() > limits.max:
            return None
    if datatype not in FLOAT or datatype == "FP64":
        return array.astype(dtype)
    try:
        with np.errstate(over="raise"):  # only a finite value overflows; infinity stays so
            return array.astype(dtype)
    except FloatingPointError:
        return None


@dataclass(frozen=True, slots=True)
class BadValue:
    index: int  # flat, row-major
    value: Any
    reason: str  # completes "<value> …"


def first_bad(values: Iterable[Any], datatype: str) -> BadValue | None:
    """The slow path, for the error message only. None: every value fits, so the structure
    was at fault (nested lists of unequal lengths)."""
    for index, value in enumerate(values):
        reason = misfit(value, datatype)
        if reason is not None:
            return BadValue(index, value, reason)
    return None


def flatten(data: Iterable[Any]) -> Iterator[Any]:
    for value in data:
        if isinstance(value, list):
            yield from flatten(value)
        else:
            yield value


def misfit(value: Any, datatype: str) -> str | None:
    if datatype == "BYTES":
        return None if type(value) is str else "is not a string (BYTES)"
    if datatype == "BOOL":
        return None if type(value) is bool else "is not a boolean (BOOL)"
    if datatype in INTEGER:
        if type(value) is bool:
            return None
        if type(value) is not int:
            return f"is not an integer ({datatype})"
        limits = np.iinfo(NUMPY[datatype])
        return None if limits.min <= value <= limits.max else f"is out of range for {datatype}"
    if type(value) not in (bool, int, float):
        return f"is not a number ({datatype})"
    if datatype == "FP64":
        return None
    try:
        magnitude = abs(float(value))
    except OverflowError:  # an integer beyond any float
        return f"is out of range for {datatype}"
    limit = float(np.finfo(NUMPY[datatype]).max)
    # Infinity itself stays infinity; only finite values can overflow.
    return f"is out of range for {datatype}" if limit < magnitude < math.inf else None


def show(value: Any) -> str:
    """A value as the client wrote it: JSON, not Python's repr."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return repr(value)
