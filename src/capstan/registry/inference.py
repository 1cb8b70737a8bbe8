"""Signatures inferred from data: numpy dtypes to Open Inference Protocol datatypes and back,
a signature from a training sample, and an ONNX session's own inputs and outputs.

Kept apart from `signature.py`, whose types the gateway loads at start without numpy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy

from capstan.registry.signature import DATATYPES, Signature, TensorSpec

_BY_DATATYPE: dict[str, numpy.dtype[Any]] = {
    "BOOL": numpy.dtype(numpy.bool_),
    "INT8": numpy.dtype(numpy.int8),
    "INT16": numpy.dtype(numpy.int16),
    "INT32": numpy.dtype(numpy.int32),
    "INT64": numpy.dtype(numpy.int64),
    "UINT8": numpy.dtype(numpy.uint8),
    "UINT16": numpy.dtype(numpy.uint16),
    "UINT32": numpy.dtype(numpy.uint32),
    "UINT64": numpy.dtype(numpy.uint64),
    "FP16": numpy.dtype(numpy.float16),
    "FP32": numpy.dtype(numpy.float32),
    "FP64": numpy.dtype(numpy.float64),
    "BYTES": numpy.dtype(object),
}

# The element types of ONNX tensors that the Open Inference Protocol can carry.
_ONNX_TENSOR_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


def datatype_of(dtype: numpy.dtype[Any]) -> str:
    """Text of any flavour (object, `str_`, `bytes_`, numpy's `StringDType`) is `BYTES`: the
    protocol has one type for variable-length values. Dates, complex numbers and extended
    precision have no protocol type, so they are refused rather than silently narrowed."""
    kind, size = dtype.kind, dtype.itemsize
    if kind == "b":
        return "BOOL"
    if kind in "iu" and size in (1, 2, 4, 8):
        return f"{'UINT' if kind == 'u' else 'INT'}{size * 8}"
    if kind == "f" and size in (2, 4, 8):
        return f"FP{size * 8}"
    if kind in "OUST":
        return "BYTES"
    raise ValueError(f"numpy dtype {dtype} has no Open Inference Protocol datatype")


def numpy_dtype(datatype: str) -> numpy.dtype[Any]:
    """`BYTES` decodes to object arrays, which hold `str` and `bytes` alike."""
    try:
        return _BY_DATATYPE[datatype]
    except KeyError:
        raise ValueError(f"unknown datatype {datatype!r}; expected one of {DATATYPES}") from None


def infer_signature(sample: Any, outputs: Any = None) -> Signature:
    """Derive a signature from data the model was trained or tested on, so registering a
    model does not require writing its tensors out by hand.

    An all-numeric DataFrame becomes one `"input"` tensor of shape (-1, n_columns), because
    that is how tabular models (scikit-learn, XGBoost, ONNX conversions of them) are fed; the
    column names are kept in `columns` so records can be mapped onto positions. Its datatype
    is FP32 when every column is float32 or narrower, FP64 when any is float64 or ints mix
    with floats, INT64 when all are integers (or integers and bools), BOOL when all are bools.
    A DataFrame with any other column (text, categorical) cannot be one tensor, so each column
    becomes its own (-1,) input. Arrays and dicts of arrays keep their trailing dimensions;
    the first becomes the free batch dimension.
    """
    if _is_dataframe(sample):
        inputs, columns = _dataframe_inputs(sample)
    elif isinstance(sample, Mapping):
        inputs, columns = _named_specs(sample), ()
    else:
        inputs, columns = (_spec("input", sample),), ()
    if outputs is None:
        outs: tuple[TensorSpec, ...] = ()
    elif isinstance(outputs, Mapping):
        outs = _named_specs(outputs)
    else:
        outs = (_spec("output", outputs),)
    return Signature(inputs, outs, columns)


def onnx_signature(session: Any) -> Signature:
    """Read the signature off an `onnxruntime.InferenceSession` (anything with its
    `get_inputs()`/`get_outputs()`), so ONNX models need no sample at all. Named dimensions
    (`"N"`, `"batch"`) and unknown ones are free (-1).

    Outputs that are not tensors (sequences, maps) are left out: the protocol cannot carry
    them. The usual one is the `seq(map(int64,tensor(float)))` probabilities skl2onnx emits
    for classifiers; convert those with `options={"zipmap": False}` to get a plain
    probability tensor instead. A non-tensor *input* is an error, since leaving it out would
    describe requests the model cannot accept.
    """
    inputs = tuple(_onnx_spec(node) for node in session.get_inputs())
    outputs = tuple(
        _onnx_spec(node) for node in session.get_outputs() if str(node.type).startswith("tensor(")
    )
    return Signature(inputs, outputs)


def _is_dataframe(sample: Any) -> bool:
    return all(hasattr(sample, attr) for attr in ("columns", "dtypes", "to_numpy"))


def _spec(name: str, values: Any) -> TensorSpec:
    array = numpy.asarray(values)
    if array.ndim == 0:
        raise ValueError(f"{name!r}: a scalar has no batch dimension; pass at least one row")
    return TensorSpec(name, _datatype_named(name, array.dtype), (-1, *array.shape[1:]))


def _named_specs(tensors: Mapping[Any, Any]) -> tuple[TensorSpec, ...]:
    return tuple(_spec(str(name), values) for name, values in tensors.items())


def _datatype_named(name: str, dtype: numpy.dtype[Any]) -> str:
    try:
        return datatype_of(dtype)
    except ValueError as error:
        raise ValueError(f"{name!r}: {error}") from None


def _column_dtype(dtype: Any) -> numpy.dtype[Any]:
    """The numpy dtype behind a pandas column dtype, so extension types (nullable Int64,
    boolean, strings, categoricals) map like their plain counterparts."""
    if isinstance(dtype, numpy.dtype):
        return dtype
    categories = getattr(dtype, "categories", None)
    if categories is not None:
        return _column_dtype(categories.dtype)
    inner = getattr(dtype, "numpy_dtype", None)
    if isinstance(inner, numpy.dtype) and inner.kind in "biuf":
        return inner
    return numpy.dtype(object)


def _dataframe_inputs(frame: Any) -> tuple[tuple[TensorSpec, ...], tuple[str, ...]]:
    names = [str(column) for column in frame.columns]
    dtypes = [_column_dtype(dtype) for dtype in frame.dtypes]
    # A categorical holds labels even when they are numbers: it never joins the feature tensor.
    labels = any(str(dtype) == "category" for dtype in frame.dtypes)
    if names and not labels and all(d.kind in "biuf" for d in dtypes):
        kinds = {d.kind for d in dtypes}
        if kinds == {"b"}:
            datatype = "BOOL"
        elif "f" not in kinds:
            datatype = "INT64"
        elif kinds == {"f"} and all(d.itemsize <= 4 for d in dtypes):
            datatype = "FP32"
        else:
            datatype = "FP64"
        return (TensorSpec("input", datatype, (-1, len(names))),), tuple(names)
    specs = tuple(
        TensorSpec(name, _datatype_named(name, dtype), (-1,))
        for name, dtype in zip(names, dtypes, strict=True)
    )
    return specs, ()


def _onnx_spec(node: Any) -> TensorSpec:
    onnx_type = str(node.type)
    datatype = _ONNX_TENSOR_TYPES.get(onnx_type)
    if datatype is None:
        raise ValueError(
            f"{node.name!r}: ONNX type {onnx_type} has no Open Inference Protocol datatype"
        )
    shape = tuple(dim if isinstance(dim, int) else -1 for dim in node.shape or ())
    return TensorSpec(str(node.name), datatype, shape)
