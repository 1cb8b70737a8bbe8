"""The Open Inference Protocol v2 (KServe, Triton) over REST: parse infer requests, encode
responses, describe models. Pure functions on bytes, dicts and numpy arrays, so the gateway's hot
path can call them without a framework and the tests can check them against the published spec
and a real client (tritonclient) without a server.

Only the JSON form is spoken: Triton's binary tensor extension (`binary_data_size`, raw bytes
after the JSON) and shared memory are refused with a message saying how to send JSON instead.
Besides the spec's tensor form, `inputs` may be a list of records (`[{feature: value, …}, …]`),
which tabular clients find far easier to write; the response to those is `{"id", "predictions"}`
(`encode_records`).

Speed matters: one row through the gateway has 1.5 ms in all, so numeric data goes through
`numpy.asarray` once and per-element Python runs only to build an error message or for BYTES.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from capstan.registry.signature import DATATYPES, Signature, TensorSpec
from capstan.serving.oip_values import (
    DATATYPE_OF,
    FLOAT,
    INTEGER,
    NUMPY,
    Array,
    cast,
    first_bad,
    flatten,
    show,
    to_array,
)

__all__ = [
    "InferRequest",
    "OipError",
    "encode_infer",
    "encode_records",
    "model_metadata",
    "parse_infer",
]


_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
_BINARY = (
    "binary and shared-memory tensor data are not supported; send `data` as JSON "
    "(tritonclient: set_data_from_numpy(..., binary_data=False))"
)
# Keys that mark an element of `inputs` as a tensor object rather than a record.
_TENSOR_KEYS = frozenset(("name", "datatype", "data", "shape"))


class OipError(Exception):
    """A request the protocol refuses, with the HTTP status and the `{"error": …}` body the spec
    prescribes, so every endpoint answers errors the same way."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def body(self) -> dict[str, str]:
        return {"error": self.message}

    @classmethod
    def unknown_model(cls, name: str, version: str | None = None) -> OipError:
        """404, not the spec's "typically 400": the URL names nothing, and the payload may be
        fine."""
        if version is None:
            return cls(f"unknown model `{name}`", 404)
        return cls(f"unknown version `{version}` of model `{name}`", 404)


@dataclass(frozen=True, slots=True, eq=False)
class InferRequest:
    """A parsed, validated infer request. `inputs` hold arrays of the signature's dtypes, keyed
    in request order (the signature's, for records). `eq=False`: comparing arrays element-wise
    has no single truth value, so the generated `==` would raise."""

    id: str | None
    inputs: dict[str, Array]
    parameters: dict[str, Any]
    outputs: list[str] | None  # requested output names; None = all
    records: bool  # came in the records form, so answer with `encode_records`


# --- parsing ------------------------------------------------------------------------------


def parse_infer(body: bytes | Mapping[str, Any], signature: Signature) -> InferRequest:
    """Parse and check an infer request against the model's signature.

    Each input must carry the signature's datatype or one that converts without surprise:
    an integer to a wider integer or to any float, a float to a wider float, and FP64 to FP32
    (JSON numbers are doubles and many clients label every float FP64); a value out of the
    target's range is refused, not wrapped or turned into infinity. The arrays returned have the
    signature's dtype. Shapes must have the signature's rank and each of its fixed dimensions
    (-1 is free). `data` may be flat or nested; either way it is read in row-major order.

    `inputs` may instead be a list of records: the spec's tensor objects are told apart by their
    keys (`name`, `datatype`, `data`, `shape`), unless the model has a feature of that name.
    """
    request = _load(body)
    raw_inputs = request.get("inputs")
    if raw_inputs is None:
        raise OipError("the request has no `inputs`")
    if not isinstance(raw_inputs, list):
        raise OipError("`inputs` must be a list")
    if not raw_inputs:
        raise OipError("`inputs` is empty")
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise OipError("`id` must be a string")
    parameters = request.get("parameters")
    if parameters is None:
        parameters = {}
    elif not isinstance(parameters, dict):
        raise OipError("`parameters` must be an object")
    outputs = _requested_outputs(request.get("outputs"), signature)

    first = raw_inputs[0]
    if not isinstance(first, dict):
        raise OipError("`inputs` must hold tensor objects (or records); inputs[0] is neither")
    features = _record_features(signature)
    if not any(key in first and key not in features for key in _TENSOR_KEYS):
        return InferRequest(
            request_id, _parse_records(raw_inputs, signature, features), parameters, outputs, True
        )
    return InferRequest(
        request_id, _parse_tensors(raw_inputs, signature), parameters, outputs, False
    )


def _load(body: bytes | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(body, Mapping):
        return body
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        if b"binary_data_size" in body:  # Triton's binary extension: JSON, then raw tensors
            raise OipError(_BINARY) from None
        raise OipError(f"the request body is not valid JSON: {error}") from None
    if not isinstance(request, dict):
        raise OipError("the request body must be a JSON object")
    return request


def _requested_outputs(raw: Any, signature: Signature) -> list[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise OipError("`outputs` must be a list")
    known = [spec.name for spec in signature.outputs]
    names: list[str] = []
    for index, output in enumerate(raw):
        name = output.get("name") if isinstance(output, dict) else None
        if not isinstance(name, str):
            raise OipError(f"outputs[{index}] must be an object with a `name`")
        if name not in known:
            raise OipError(f"unknown output `{name}`; the model returns: " + ", ".join(known))
        if name not in names:
            names.append(name)
    # An empty list asks for nothing in particular, which the spec answers with everything.
    return names or None


def _parse_tensors(raw_inputs: list[Any], signature: Signature) -> dict[str, Array]:
    specs = {spec.name: spec for spec in signature.inputs}
    inputs: dict[str, Array] = {}
    for index, tensor in enumerate(raw_inputs):
        if not isinstance(tensor, dict):
            raise OipError(f"inputs[{index}] is not an object")
        name = tensor.get("name")
        if not isinstance(name, str):
            raise OipError(f"inputs[{index}] has no `name`")
        spec = specs.get(name)
        if spec is None:
            raise OipError(f"unknown input `{name}`; the model takes: " + ", ".join(specs))
        if name in inputs:
            raise OipError(f"input `{name}` appears twice")
        inputs[name] = _parse_tensor(name, tensor, spec)
    missing = [name for name in specs if name not in inputs]
    if missing:
        listed = ", ".join(f"`{name}`" for name in missing)
        raise OipError(f"missing input{'s' if len(missing) > 1 else ''} {listed}")
    return inputs


def _parse_tensor(name: str, tensor: dict[str, Any], spec: TensorSpec) -> Array:
    parameters = tensor.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise OipError(f"input `{name}`: `parameters` must be an object")
    if parameters and ("binary_data_size" in parameters or "shared_memory_region" in parameters):
        raise OipError(f"input `{name}`: {_BINARY}")
    datatype = tensor.get("datatype")
    if datatype is None:
        raise OipError(f"input `{name}`: missing `datatype`")
    if datatype not in DATATYPES:
        raise OipError(
            f"input `{name}`: unknown datatype {show(datatype)}; one of " + ", ".join(DATATYPES)
        )
    if datatype != spec.datatype and not _castable(datatype, spec.datatype):
        raise OipError(f"input `{name}`: the model takes {spec.datatype}, not {datatype}")
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(type(dim) is int and dim >= 0 for dim in shape):
        raise OipError(f"input `{name}`: `shape` must be a list of non-negative integers")
    if not _fits(shape, spec.shape):
        raise OipError(
            f"input `{name}`: shape {shape} does not match the model's {list(spec.shape)}"
        )
    data = tensor.get("data")
    if not isinstance(data, list):
        raise OipError(f"input `{name}`: `data` must be a list")
    array = to_array(data, datatype)
    if array is not None and datatype != spec.datatype:
        datatype = spec.datatype  # if the cast fails, say which values the model cannot take
        array = cast(array, datatype)
    if array is None:
        bad = first_bad(flatten(data), datatype)
        if bad is None:
            raise OipError(f"input `{name}`: the nested lists of `data` have unequal lengths")
        raise OipError(f"input `{name}`: {show(bad.value)} at element {bad.index} {bad.reason}")
    count = math.prod(shape)
    if array.size != count:
        raise OipError(f"input `{name}`: shape {shape} needs {count} values, got {array.size}")
    return array.reshape(shape)


def _castable(given: str, wanted: str) -> bool:
    if given in ("BOOL", "BYTES") or wanted in ("BOOL", "BYTES"):
        return False
    if given in INTEGER and wanted in FLOAT:
        return True
    if given == "FP64" and wanted == "FP32":
        return True
    return bool(np.can_cast(NUMPY[given], NUMPY[wanted], "safe"))


def _fits(shape: Sequence[int], model: Sequence[int]) -> bool:
    return len(shape) == len(model) and all(
        want in (-1, got) for got, want in zip(shape, model, strict=True)
    )


# --- records ------------------------------------------------------------------------------


def _record_features(signature: Signature) -> tuple[str, ...]:
    """The feature names a record may hold: the columns of a model fed one (-1, n) tensor, the
    input names of a model fed one (-1,) tensor per feature, none for any other model."""
    inputs = signature.inputs
    if signature.columns and len(inputs) == 1 and len(inputs[0].shape) == 2:
        return signature.columns
    if inputs and all(len(spec.shape) == 1 for spec in inputs):
        return tuple(spec.name for spec in inputs)
    return ()


def _parse_records(
    records: list[Any], signature: Signature, features: tuple[str, ...]
) -> dict[str, Array]:
    inputs = signature.inputs
    if not features:
        raise OipError(
            "this model takes tensors ("
            + ", ".join(f"`{spec.name}` {list(spec.shape)}" for spec in inputs)
            + "), not records; send `inputs` as tensor objects"
        )
    rows = _rows(records, features)
    if len(inputs) == 1 and len(inputs[0].shape) == 2:
        spec = inputs[0]
        if spec.shape[1] not in (-1, len(features)):
            raise OipError(
                f"the model's input `{spec.name}` has {spec.shape[1]} columns "
                f"but {len(features)} features are named"
            )
        array = to_array(rows, spec.datatype, ndim=2)
        if array is None:
            bad = first_bad(chain.from_iterable(rows), spec.datatype)
            assert bad is not None  # rows are flat tuples: a misfit is a value, never a shape
            row, position = divmod(bad.index, len(features))
            raise OipError(
                f"feature `{features[position]}` in row {row}: {show(bad.value)} {bad.reason}"
            )
        return {spec.name: array}
    arrays: dict[str, Array] = {}
    for position, spec in enumerate(inputs):
        column = [row[position] for row in rows]
        array = to_array(column, spec.datatype, ndim=1)
        if array is None:
            bad = first_bad(column, spec.datatype)
            assert bad is not None
            raise OipError(
                f"feature `{spec.name}` in row {bad.index}: {show(bad.value)} {bad.reason}"
            )
        arrays[spec.name] = array
    return arrays


def _rows(records: list[Any], features: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """Each record's values in feature order. One `itemgetter` call per row is the cheapest way
    Python has; when it fails, the slow path finds which feature and row to name."""
    pick = itemgetter(*features)
    width = len(features)
    rows: list[tuple[Any, ...]] = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise OipError(f"row {index} is not an object")
        try:
            values = pick(record)
        except KeyError:
            missing = next(feature for feature in features if feature not in record)
            raise OipError(f"row {index}: missing feature `{missing}`") from None
        if len(record) != width:
            unknown = next(key for key in record if key not in features)
            raise OipError(
                f"row {index}: unknown feature `{unknown}`; the model takes: " + ", ".join(features)
            )
        rows.append(values if width > 1 else (values,))
    return rows


# --- encoding -----------------------------------------------------------------------------


def encode_infer(
    model_name: str,
    version: str | None,
    request_id: str,
    outputs: Mapping[str, Array],
    *,
    requested: Sequence[str] | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> bytes:
    """The spec's inference response. `data` is flat and row-major, as in the spec's examples;
    `model_version` is left out for unversioned models, as the spec asks. A requested output
    the model did not produce is a bug upstream, so it raises ValueError rather than vanishing.
    """
    names = list(outputs) if requested is None else list(requested)
    tensors: list[dict[str, Any]] = []
    for name in names:
        if name not in outputs:
            raise ValueError(f"no output `{name}` to encode")
        datatype, data = _flat(outputs[name])
        shape = list(np.shape(outputs[name]))
        tensors.append({"name": name, "shape": shape, "datatype": datatype, "data": data})
    response: dict[str, Any] = {"model_name": model_name}
    if version is not None:
        response["model_version"] = version
    response["id"] = request_id
    if parameters:
        response["parameters"] = parameters
    response["outputs"] = tensors
    return orjson.dumps(response, option=_JSON_OPTIONS, default=_json_default)


def encode_records(outputs: Mapping[str, Array], request_id: str) -> bytes:
    """The answer to a records request: one prediction per row, the row's value when the model
    has one output, `{output: value}` when it has several."""
    if not outputs:
        raise ValueError("no outputs to encode")
    columns = {name: _rows_of(name, output) for name, output in outputs.items()}
    counts = {len(rows) for rows in columns.values()}
    if len(counts) > 1:
        raise ValueError(f"outputs disagree on the number of rows: {sorted(counts)}")
    if len(columns) == 1:
        (predictions,) = columns.values()
    else:
        names = list(columns)
        rows = zip(*(_plain(column) for column in columns.values()), strict=True)
        predictions = [dict(zip(names, row, strict=True)) for row in rows]
    return orjson.dumps(
        {"id": request_id, "predictions": predictions},
        option=_JSON_OPTIONS,
        default=_json_default,
    )


def _flat(output: Any) -> tuple[str, Any]:
    """(datatype, flat row-major data) of one output. Numeric arrays stay arrays: orjson writes
    them natively, and writes FP32 as the shortest decimal that reads back to the same float
    (0.1, not 0.10000000149011612)."""
    array = np.asarray(output)
    datatype = DATATYPE_OF.get(array.dtype)
    if datatype is not None:
        return datatype, array.reshape(-1)
    if array.dtype.kind in "OUS":
        return "BYTES", [_text(value) for value in array.reshape(-1).tolist()]
    raise ValueError(f"no OIP datatype for numpy dtype {array.dtype}")


def _rows_of(name: str, output: Any) -> Any:
    """The output's rows (its first axis), as something `len` takes. Numeric arrays stay numpy,
    which orjson formats exactly as `encode_infer` does."""
    array = np.asarray(output)
    if array.ndim == 0:
        raise ValueError(f"output `{name}` has no rows (it is a scalar)")
    if array.dtype in DATATYPE_OF:
        return np.ascontiguousarray(array)
    if array.dtype.kind in "OUS":
        return _texts(array.tolist())
    raise ValueError(f"no OIP datatype for numpy dtype {array.dtype}")


def _plain(column: Any) -> list[Any]:
    """A column as JSON's own values, one per row. A round trip through orjson keeps FP32 values
    as short as `encode_infer` writes them (0.1 reads back as the double 0.1, where `tolist`
    gives 0.10000000149011612), and costs less than handing orjson a numpy view per row."""
    if isinstance(column, np.ndarray):
        plain: list[Any] = orjson.loads(orjson.dumps(column, option=_JSON_OPTIONS))
        return plain
    return list(column)


def _texts(values: list[Any]) -> list[Any]:
    return [_texts(value) if isinstance(value, list) else _text(value) for value in values]


def _text(value: Any) -> str:
    """BYTES travel as JSON strings; bytes that are not UTF-8 cannot, and say so."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode()
    raise ValueError(f"a BYTES output holds {value!r}, which is neither str nor bytes")


def _json_default(value: Any) -> Any:
    """What orjson's numpy support leaves out: 0-d and non-contiguous arrays, object arrays,
    and numpy scalars in places it does not look (e.g. response parameters)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


# --- metadata -----------------------------------------------------------------------------


def model_metadata(
    name: str, versions: list[str], platform: str, signature: Signature
) -> dict[str, Any]:
    """The body of `GET /v2/models/{name}[/versions/{v}]`."""
    return {
        "name": name,
        "versions": list(versions),
        "platform": platform,
        "inputs": [spec.as_json() for spec in signature.inputs],
        "outputs": [spec.as_json() for spec in signature.outputs],
    }
