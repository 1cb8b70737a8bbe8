"""A model's signature: the named, typed, shaped tensors it takes and returns.

Datatypes are the Open Inference Protocol's (`BOOL`, `INT8` … `INT64`, `UINT8` … `UINT64`,
`FP16`, `FP32`, `FP64`, `BYTES`), so what the registry records is what `/v2/models/{name}`
answers and what an infer request is checked against. A dimension of -1 is free (the batch).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DATATYPES = (
    "BOOL",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
)


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    datatype: str  # one of DATATYPES
    shape: tuple[int, ...]  # -1 = any size (the batch dimension comes first)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(str(data["name"]), str(data["datatype"]), tuple(int(d) for d in data["shape"]))


@dataclass(frozen=True, slots=True)
class Signature:
    """`columns`: for tabular models fed one tensor of features, the feature names in order,
    so the records form (`{"inputs": [{feature: value, …}]}`) can build that tensor."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    columns: tuple[str, ...] = field(default=())

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "inputs": [t.as_json() for t in self.inputs],
            "outputs": [t.as_json() for t in self.outputs],
        }
        if self.columns:
            data["columns"] = list(self.columns)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Signature:
        return cls(
            tuple(TensorSpec.from_json(t) for t in data.get("inputs", ())),
            tuple(TensorSpec.from_json(t) for t in data.get("outputs", ())),
            tuple(str(c) for c in data.get("columns", ())),
        )
