"""Registering a model from a notebook or a training job, in one call:

    import capstan.registry
    capstan.registry.log_model(model, name="credit-risk", train_data=df, label="default")

`log_model` serializes the model (skops, ONNX, XGBoost JSON, LightGBM text), derives what the
registry wants from the training data (the signature, the reference profile that drift
monitoring compares against, the data's SHA-256 and the code's commit for lineage), uploads
the artifact and registers the version. The server then scans and loads the artifact as for
any other registration, so a model logged here is held to exactly the same checks.

With `url` and `api_key` (or `CAPSTAN_URL` and `CAPSTAN_API_KEY`) it talks to that server
over HTTP (`CAPSTAN_CA_BUNDLE` names a private CA). With neither it runs the control API in
this process against the local home, as the CLI does, as a local administrator.

Mistakes found before anything is sent (a model whose flavor cannot be told, training data
without the label column named) raise `ValueError`; everything the server refuses, or a
server that cannot be reached, raises `RegistryError`.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, SupportsFloat
from urllib.parse import quote

import httpx
import numpy
from numpy.typing import NDArray

from capstan.errors import InvalidInput
from capstan.registry.inference import infer_signature, onnx_signature
from capstan.registry.profile import profile_of
from capstan.registry.signature import Signature
from capstan.serving.loaders import flavor_of, load_model, serialize_model

__all__ = ["RegisteredVersion", "RegistryError", "log_model", "train_data_sha256"]

URL_ENV = "CAPSTAN_URL"
API_KEY_ENV = "CAPSTAN_API_KEY"
CA_BUNDLE_ENV = "CAPSTAN_CA_BUNDLE"
# Registration scans and loads the artifact before answering; a large one takes a while.
TIMEOUT = httpx.Timeout(300.0, connect=10.0)
# skl2onnx reads only the sample's type and width, so a few rows are as good as all of them.
ONNX_SAMPLE_ROWS = 5
HASH_PREFIX = b"capstan-train-data/1\n"
_MISSING = 2**64 - 1
_RAW_KINDS = "biufcmM"  # dtypes whose bytes are their values (no pointers to objects)

Array = NDArray[Any]


class RegistryError(Exception):
    """The registry refused the version (its problem+json's `status` and `detail`), or could
    not be reached (`status` None)."""

    def __init__(self, detail: str, *, status: int | None = None, field: str | None = None) -> None:
        super().__init__(f"{detail} (HTTP {status})" if status is not None else detail)
        self.detail = detail
        self.status = status
        self.field = field


@dataclass(frozen=True)
class RegisteredVersion:
    """The version the registry created. `url` is the path of its Open Inference Protocol
    endpoint on the data plane, the version pinned (so later versions do not move it)."""

    name: str
    version: int
    flavor: str
    aliases: tuple[str, ...]
    artifact_sha256: str
    signature: dict[str, Any]
    url: str


def log_model(
    model: Any,
    *,
    name: str,
    flavor: str | None = None,
    train_data: Any = None,
    label: str | None = None,
    signature: dict[str, Any] | None = None,
    metrics: Mapping[str, SupportsFloat] | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    aliases: Sequence[str] = (),
    description: str | None = None,
    owner: str | None = None,
    risk_tier: str | None = None,
    intended_use: str | None = None,
    project: str | None = None,
    code_commit: str | None = None,
    train_data_uri: str | None = None,
    parent_version: int | None = None,
    trusted_types: Sequence[str] = (),
    url: str | None = None,
    api_key: str | None = None,
) -> RegisteredVersion:
    """Register `model` as a new version of `name` and return that version.

    `flavor` defaults to the model's own (`flavor_of`); `flavor="onnx"` with a scikit-learn
    estimator converts it with skl2onnx, fed float32 rows of the training features.

    `train_data` (a pandas DataFrame, a dict of columns or a 2-D numpy array, whose columns
    are then `f0`, `f1`, …) is what the model was trained on; `label` names its label column,
    which is kept out of the features. From it come the reference profile of the features,
    the signature (one tensor of the features, their names kept so the records form works;
    an ONNX model's own inputs, their columns named), and `train_data_sha256` in the lineage
    (see `train_data_sha256`). Without it a non-ONNX model needs `signature`.

    `code_commit` defaults to `git rev-parse HEAD` in the current directory, when that is a
    git checkout. `aliases` are pointed at the new version.
    """
    if isinstance(aliases, str):  # "champion" is one alias, not eight
        aliases = (aliases,)
    flavor = flavor or _flavor_of(model)
    table = _Table.of(train_data) if train_data is not None else None
    features = table.without(label) if table is not None else None
    if features is None and label is not None:
        raise ValueError("label= names a column of train_data, and no train_data was given")
    content, filename = _artifact(model, flavor, features)
    if signature is None and features is not None:
        signature = (
            _onnx_signature(content, filename, features.names)
            if flavor == "onnx"
            else infer_signature(features.signature_sample()).as_json()
        )
    if signature is None and flavor != "onnx":
        raise ValueError(
            "pass train_data= (or signature=): only ONNX models describe their own inputs"
        )
    lineage = {
        "train_data_uri": train_data_uri,
        "train_data_sha256": table.sha256() if table is not None else None,
        "code_commit": code_commit or _head_commit(),
        "parent_version": parent_version,
    }
    body: dict[str, Any] = {
        "flavor": flavor,
        "signature": signature,
        "params": {str(k): _jsonable(v) for k, v in (params or {}).items()},
        "metrics": _metrics(metrics or {}),
        "tags": {str(k): str(v) for k, v in (tags or {}).items()},
        "lineage": {k: v for k, v in lineage.items() if v is not None},
        "profile": profile_of(features.profile_sample()) if features is not None else None,
        "description": description,
        "aliases": list(aliases),
        "owner": owner,
        "risk_tier": risk_tier,
        "intended_use": intended_use,
        "project": project,
        "trusted_types": list(trusted_types),
    }
    with _connection(url, api_key) as http:
        headers = {"x-capstan-filename": filename}
        upload = _call(http, "POST", "/api/v1/uploads", content=content, headers=headers)
        if upload.get("sha256") != hashlib.sha256(content).hexdigest():
            raise RegistryError(f"the artifact {filename} reached the server altered")
        body["upload"] = upload["upload"]
        path = f"/api/v1/models/{quote(name, safe='')}/versions"
        created = _call(http, "POST", path, json={k: v for k, v in body.items() if v is not None})
    number = int(created["version"])
    return RegisteredVersion(
        name=str(created["name"]),
        version=number,
        flavor=str(created["flavor"]),
        aliases=tuple(created.get("aliases") or ()),
        artifact_sha256=str(created["artifact_sha256"]),
        signature=dict(created["signature"]),
        url=f"/v2/models/{quote(name, safe='')}/versions/{number}/infer",
    )


def train_data_sha256(train_data: Any) -> str:
    """The `train_data_sha256` `log_model` records: a hash of the values, not of a file, so
    the same data gives the same hash whether it was read from CSV, Parquet or a database
    (as long as it was read into the same dtypes: 1 and 1.0 are different data here).

    Every column counts, the label included (it is part of what the model learnt from), in
    order, as given: a DataFrame's columns as `Series.to_numpy()` returns them, a dict's
    values through `numpy.asarray` (a list of text kept as objects, as pandas keeps it), a
    2-D array's columns named `f0`, `f1`, …. SHA-256 of:

    - `b"capstan-train-data/1\\n"`, then for each column, left to right:
    - its name: u64(len) + UTF-8 (u64 is 8 bytes, little-endian);
    - a column of booleans, numbers or dates (numpy kinds `biufcmM`): `b"N"`, u64(len) +
      the ASCII of its little-endian dtype (`"<f8"`, `"|b1"`, `"<M8[ns]"`), u64(byte count)
      + its values in row order as that dtype;
    - any other column: `b"T"`, u64(rows), then per value u64(2**64 - 1) when missing
      (None, NaN, NaT, pandas' NA), else u64(len) + its bytes (a `bytes` value as is,
      anything else as the UTF-8 of `str(value)`).
    """
    return _Table.of(train_data).sha256()


# --- training data -----------------------------------------------------------------------------


class _Columns:
    """Columns as `infer_signature` reads a DataFrame, so a dict of columns and a 2-D array
    get the same signature as the equivalent DataFrame (one tensor, its columns named)."""

    def __init__(self, names: tuple[str, ...], columns: tuple[Array, ...]) -> None:
        self.columns = list(names)
        self.dtypes = [column.dtype for column in columns]
        self._values = columns

    def to_numpy(self) -> Array:
        return numpy.column_stack(self._values)


@dataclass(frozen=True)
class _Table:
    names: tuple[str, ...]
    columns: tuple[Array, ...]  # 1-D, one per name
    frame: Any = None  # the DataFrame it came from, which knows its extension dtypes

    @classmethod
    def of(cls, data: Any) -> _Table:
        if all(hasattr(data, attr) for attr in ("columns", "dtypes", "to_numpy", "iloc")):
            names = tuple(str(column) for column in data.columns)
            columns = tuple(numpy.asarray(data.iloc[:, i].to_numpy()) for i in range(len(names)))
            return cls._checked(names, columns, data)
        if isinstance(data, Mapping):
            names = tuple(str(key) for key in data)
            return cls._checked(names, tuple(_column(k, v) for k, v in data.items()), None)
        array = numpy.asarray(data)
        if array.ndim != 2:
            raise ValueError(
                "train_data is a DataFrame, a dict of columns or a 2-D array, "
                f"not a {array.ndim}-D {type(data).__name__}"
            )
        names = tuple(f"f{i}" for i in range(array.shape[1]))
        return cls._checked(names, tuple(array[:, i] for i in range(array.shape[1])), None)

    @classmethod
    def _checked(cls, names: tuple[str, ...], columns: tuple[Array, ...], frame: Any) -> _Table:
        if len(set(names)) != len(names):
            raise ValueError(f"train_data names a column twice: {list(names)}")
        lengths = {len(column) for column in columns}
        if len(lengths) > 1:
            raise ValueError(f"train_data's columns differ in length: {sorted(lengths)}")
        if not names or lengths == {0}:
            raise ValueError("train_data has no rows or no columns")
        return cls(names, columns, frame)

    def without(self, label: str | None) -> _Table:
        if label is None:
            return self
        if label not in self.names:
            raise ValueError(f"train_data has no column {label!r} (label=): {list(self.names)}")
        keep = [i for i, name in enumerate(self.names) if name != label]
        frame = None
        if self.frame is not None:
            frame = self.frame.drop(columns=[self.frame.columns[self.names.index(label)]])
        return _Table(
            tuple(self.names[i] for i in keep), tuple(self.columns[i] for i in keep), frame
        )

    def profile_sample(self) -> Any:
        return (
            self.frame
            if self.frame is not None
            else dict(zip(self.names, self.columns, strict=True))
        )

    def signature_sample(self) -> Any:
        return self.frame if self.frame is not None else _Columns(self.names, self.columns)

    def float32_rows(self, rows: int) -> Array:
        try:
            return numpy.column_stack([c[:rows] for c in self.columns]).astype(numpy.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"converting to ONNX needs numeric features: {exc}") from exc

    def sha256(self) -> str:
        digest = hashlib.sha256(HASH_PREFIX)
        for name, column in zip(self.names, self.columns, strict=True):
            digest.update(_sized(name.encode("utf-8")))
            if column.dtype.kind in _RAW_KINDS:
                raw = numpy.ascontiguousarray(column, dtype=column.dtype.newbyteorder("<"))
                digest.update(b"N" + _sized(raw.dtype.str.encode("ascii")))
                digest.update(_sized(raw.tobytes()))
                continue
            digest.update(b"T" + _u64(len(column)))
            for value in column.tolist():
                if _is_missing(value):
                    digest.update(_u64(_MISSING))
                else:
                    text = value if isinstance(value, bytes) else str(value).encode("utf-8")
                    digest.update(_sized(text))
        return digest.hexdigest()


def _column(name: Any, values: Any) -> Array:
    array = numpy.asarray(values)
    if array.dtype.kind in "US" and not isinstance(values, numpy.ndarray):
        # numpy would turn ["a", None, nan] into the text "None" and "nan"; pandas keeps the
        # values, and so does this, so a dict of lists hashes like its DataFrame.
        array = numpy.empty(len(values), dtype=object)
        array[:] = list(values)
    if array.ndim != 1:
        raise ValueError(f"train_data column {name!r} must be 1-D, not of shape {array.shape}")
    return array


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN and NaT are unequal to themselves
    except (TypeError, ValueError):  # pandas' NA has no truth value
        return True


def _u64(number: int) -> bytes:
    return number.to_bytes(8, "little")


def _sized(data: bytes) -> bytes:
    return _u64(len(data)) + data


# --- the artifact and its signature ------------------------------------------------------------


def _flavor_of(model: Any) -> str:
    try:
        return flavor_of(model)
    except InvalidInput as exc:
        raise ValueError(exc.detail) from exc


def _artifact(model: Any, flavor: str, features: _Table | None) -> tuple[bytes, str]:
    sample = None
    # Only a model still to be converted needs the sample (an ONNX model may take text).
    converting = not isinstance(model, bytes | bytearray) and not hasattr(
        model, "SerializeToString"
    )
    if flavor == "onnx" and converting and features is not None:
        sample = features.float32_rows(ONNX_SAMPLE_ROWS)
    try:
        return serialize_model(model, flavor, sample)
    except InvalidInput as exc:
        if exc.field == "sample":
            raise ValueError(
                f"converting a {type(model).__name__} to ONNX needs train_data= "
                "(its features fix the model's input)"
            ) from exc
        raise ValueError(exc.detail) from exc


def _onnx_signature(content: bytes, filename: str, names: tuple[str, ...]) -> dict[str, Any]:
    """The model's own inputs and outputs; when it takes one (rows, features) tensor of the
    training features' width, their names too, so records can be sent to it."""
    try:
        session = getattr(load_model("onnx", content, filename=filename), "session", None)
    except InvalidInput as exc:
        raise ValueError(exc.detail) from exc
    found = onnx_signature(session)
    inputs = found.inputs
    if len(inputs) == 1 and len(inputs[0].shape) == 2 and inputs[0].shape[1] in (-1, len(names)):
        found = Signature(found.inputs, found.outputs, names)
    return found.as_json()


def _head_commit() -> str | None:
    """The current directory's commit, or None when it is not a git checkout (or git is not
    installed): lineage is recorded when it can be, and never stops a registration."""
    git = shutil.which("git")
    if git is None:
        return None
    try:
        done = subprocess.run(  # noqa: S603  # a fixed command, no user input
            [git, "rev-parse", "--verify", "--quiet", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


def _metrics(metrics: Mapping[str, SupportsFloat]) -> dict[str, float]:
    """Numbers as plain floats (numpy's float32 is not JSON); NaN and infinities refused here,
    since JSON has no way to carry them."""
    plain: dict[str, float] = {}
    for key, value in metrics.items():
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"metric {key!r} is {number}: metrics are finite numbers")
        plain[str(key)] = number
    return plain


def _jsonable(value: Any) -> Any:
    """Hyperparameters as JSON: `get_params()` holds numpy scalars, None, and objects (a
    kernel, a callable) that are recorded by their text rather than refused."""
    if isinstance(value, numpy.generic):
        value = value.item()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


# --- the server --------------------------------------------------------------------------------


@contextmanager
def _connection(url: str | None, api_key: str | None) -> Iterator[httpx.Client]:
    """A client for the server named, else for the control API run in this process."""
    url = url or os.environ.get(URL_ENV)
    if url:
        api_key = api_key or os.environ.get(API_KEY_ENV)
        if not api_key:
            raise ValueError(f"no Capstan API key for {url}: pass api_key= or set {API_KEY_ENV}")
        verify: bool | str = os.environ.get(CA_BUNDLE_ENV) or True
        headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        with httpx.Client(
            base_url=url.rstrip("/"), headers=headers, timeout=TIMEOUT, verify=verify
        ) as http:
            yield http
        return
    if api_key:
        raise ValueError(f"api_key= without a server: pass url= or set {URL_ENV}")
    # The server's app and its store are loaded only here, for the local mode.
    from capstan.cli.client import local_app
    from capstan.cli.output import CliError

    try:
        with local_app() as http:
            yield http
    except CliError as exc:  # no home, a schema to migrate: said as the CLI says it
        raise RegistryError(f"{exc.message} (or pass url= and api_key=)") from exc


def _call(http: httpx.Client, method: str, path: str, **request: Any) -> dict[str, Any]:
    try:
        response = http.request(method, path, **request)
    except httpx.HTTPError as exc:
        raise RegistryError(f"cannot reach Capstan at {http.base_url}: {exc}") from exc
    if response.status_code >= 400:
        raise _problem(response)
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise RegistryError(f"{method} {path} answered something that is not a JSON object")
    return body


def _problem(response: httpx.Response) -> RegistryError:
    """problem+json's `detail` (and `field`); a body of another kind, its first line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("detail") or body.get("title"), str):
        field = body.get("field")
        return RegistryError(
            str(body.get("detail") or body.get("title")),
            status=response.status_code,
            field=field if isinstance(field, str) else None,
        )
    text = response.text.strip().splitlines()
    return RegistryError(
        text[0][:200] if text else response.reason_phrase, status=response.status_code
    )
