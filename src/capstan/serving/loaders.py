"""A version's artifact bytes, turned into something that predicts, one class per flavor.

Every flavor loads from bytes, so what is parsed is exactly what was checked against the
registered SHA-256. A prediction is synchronous and single-threaded: the server runs them in
worker threads, so one request's latency does not depend on how busy the others are.
XGBoost and LightGBM (the optional `ml` extra) are imported only when they are used.
"""

from __future__ import annotations

import contextlib
import pickle
import sys
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from capstan.errors import InvalidInput

Array = NDArray[Any]
FLAVORS = ("onnx", "sklearn", "xgboost", "lightgbm")

# skops types accepted without being named by the caller: the libraries a fitted scikit-learn
# model is made of. Anything else (a custom estimator, a helper function) must be reviewed.
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.")
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")

_ORT_ALIASES = {"float": "float32", "double": "float64"}


def _ort_dtype(type_name: str) -> np.dtype[Any] | None:
    """numpy's dtype for an input type such as "tensor(float)"; None leaves the input as given."""
    inner = type_name.removeprefix("tensor(").removesuffix(")")
    with contextlib.suppress(TypeError):  # "tensor(string)", "seq(…)": nothing to cast to
        if type_name.startswith("tensor("):
            return np.dtype(_ORT_ALIASES.get(inner, inner))
    return None


class LoadedModel(Protocol):
    flavor: str

    def predict(self, inputs: dict[str, Array]) -> dict[str, Array]: ...


def load_model(
    flavor: str, data: bytes, *, filename: str, trusted_types: Sequence[str] = ()
) -> LoadedModel:
    """`trusted_types` names the extra skops types a reviewer accepted (sklearn flavor only)."""
    _check_flavor(flavor)
    if flavor == "sklearn":
        return _SklearnModel(_load_sklearn(data, filename, trusted_types))
    try:
        if flavor == "onnx":
            return _OnnxModel(data)
        if flavor == "xgboost":
            return _XGBoostModel(data)
        return _LightGBMModel(data)
    except ImportError as exc:
        raise InvalidInput(f"the {flavor} flavor needs the 'ml' extra ({exc})") from exc
    except Exception as exc:  # each library raises its own types; all mean "does not load"
        raise _not_loadable(flavor, filename, exc) from exc


class _OnnxModel:
    flavor = "onnx"

    def __init__(self, data: bytes) -> None:
        import onnxruntime as ort  # type: ignore[import-untyped]  # ~40 MB: on first ONNX load

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name: _ort_dtype(i.type) for i in self._session.get_inputs()}
        self._outputs = [o.name for o in self._session.get_outputs()]

    @property
    def session(self) -> Any:
        """The ONNX Runtime session, for the signature the model declares."""
        return self._session

    def predict(self, inputs: dict[str, Array]) -> dict[str, Array]:
        if set(inputs) != set(self._inputs):
            raise InvalidInput(
                f"the model takes inputs {sorted(self._inputs)}, not {sorted(inputs)}"
            )
        feed: dict[str, Array] = {}
        for name, dtype in self._inputs.items():
            value = np.asarray(inputs[name])
            try:
                # same_kind: FP64 → FP32 is fine, a float silently truncated to an int is not.
                feed[name] = value if dtype is None else value.astype(dtype, casting="same_kind")
            except TypeError as exc:
                raise InvalidInput(f"input {name!r}: {exc}", field=name) from exc
        try:
            results = self._session.run(self._outputs, feed)
        except Exception as exc:  # onnxruntime's InvalidArgument and friends: a bad shape, say
            raise InvalidInput(f"the model rejected the inputs: {_short(exc)}") from exc
        return {name: np.asarray(value) for name, value in zip(self._outputs, results, strict=True)}


class _SklearnModel:
    """Outputs `label` and, for classifiers with `predict_proba`, `probabilities`."""

    flavor = "sklearn"

    def __init__(self, model: Any) -> None:
        if not callable(getattr(model, "predict", None)):
            raise InvalidInput(f"the loaded {type(model).__name__} has no predict method")
        self._model = model
        self._features: int | None = getattr(model, "n_features_in_", None)

    def predict(self, inputs: dict[str, Array]) -> dict[str, Array]:
        features = _single_matrix(inputs, self._features)
        try:
            outputs = {"label": np.asarray(self._model.predict(features))}
            if hasattr(self._model, "predict_proba"):
                outputs["probabilities"] = np.asarray(self._model.predict_proba(features))
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"the model rejected the inputs: {_short(exc)}") from exc
        return outputs


class _XGBoostModel:
    """`output` is what the booster predicts: for a `binary:logistic` model, the probability of
    class 1; for `multi:softprob`, one probability per class; for a regressor, the value."""

    flavor = "xgboost"

    def __init__(self, data: bytes) -> None:
        import xgboost

        self._booster = xgboost.Booster()
        self._booster.load_model(bytearray(data))  # JSON or UBJ, told apart by xgboost
        self._booster.set_param({"nthread": 1})

    def predict(self, inputs: dict[str, Array]) -> dict[str, Array]:
        import xgboost

        features = _single_matrix(inputs, self._booster.num_features())
        matrix = xgboost.DMatrix(features, feature_names=self._booster.feature_names)
        return {"output": np.asarray(self._booster.predict(matrix))}


class _LightGBMModel:
    """`output` is the booster's prediction: for a binary classifier, the probability of class
    1; for a multiclass one, one probability per class; for a regressor, the value."""

    flavor = "lightgbm"

    def __init__(self, data: bytes) -> None:
        import lightgbm

        self._booster = lightgbm.Booster(model_str=data.decode("utf-8"))

    def predict(self, inputs: dict[str, Array]) -> dict[str, Array]:
        features = _single_matrix(inputs, self._booster.num_feature())
        return {"output": np.asarray(self._booster.predict(features, num_threads=1))}


def _load_sklearn(data: bytes, filename: str, trusted_types: Sequence[str]) -> Any:
    suffix = PurePosixPath(filename).suffix.lower()
    try:
        if suffix == ".skops":
            return _skops_io().loads(data, trusted=_skops_trusted(data, filename, trusted_types))
        if suffix in PICKLE_SUFFIXES:
            # Unpickling runs code. The registry scans every pickle-bearing artifact with
            # picklescan (registry/scanning.py) before storing it, and these are the bytes whose
            # SHA-256 was recorded then. ONNX, or skops for scikit-learn, is still the
            # recommended format: neither runs code when loaded.
            return pickle.loads(data)  # noqa: S301
    except InvalidInput:
        raise
    except Exception as exc:  # the libraries' own errors: the file does not load
        raise _not_loadable("sklearn", filename, exc) from exc
    raise InvalidInput(
        f"{filename}: scikit-learn models load from .skops (or a scanned pickle: "
        f"{', '.join(PICKLE_SUFFIXES)})",
        field="filename",
    )


def _skops_trusted(data: bytes, filename: str, trusted_types: Sequence[str]) -> list[str]:
    """The types skops asks about, once each is allowlisted or named by the caller."""
    untrusted = [str(t) for t in _skops_io().get_untrusted_types(data=data)]
    refused = [
        t for t in untrusted if not t.startswith(TRUSTED_PREFIXES) and t not in trusted_types
    ]
    if refused:
        raise InvalidInput(
            f"{filename} holds types that are not trusted: {', '.join(refused)}; "
            "review them and pass them in trusted_types to load it",
            field="trusted_types",
            untrusted=refused,
        )
    return untrusted


def _skops_io() -> Any:
    import skops.io  # type: ignore[import-untyped]

    return skops.io


def flavor_of(model: Any) -> str:
    """The flavor of an in-memory model, judged by class. A library that is not imported yet
    cannot have made the model, so nothing is imported here just to look."""
    checks = (
        ("onnx", "onnx", ("ModelProto",)),
        # XGBoost's and LightGBM's estimators are scikit-learn estimators too: they come first.
        ("xgboost", "xgboost", ("XGBModel", "Booster")),
        ("lightgbm", "lightgbm", ("LGBMModel", "Booster")),
        ("sklearn", "sklearn.base", ("BaseEstimator",)),
    )
    for flavor, module_name, class_names in checks:
        module = sys.modules.get(module_name)
        classes = tuple(getattr(module, name) for name in class_names if hasattr(module, name))
        if classes and isinstance(model, classes):
            return flavor
    raise InvalidInput(
        f"cannot tell the flavor of a {type(model).__module__}.{type(model).__qualname__}; "
        f"name one of {', '.join(FLAVORS)}",
        field="flavor",
    )


def serialize_model(model: Any, flavor: str, sample: Array | None = None) -> tuple[bytes, str]:
    """An in-memory model as artifact bytes and the file name they are stored under.

    `sample` (a few rows, float32 for most converters) lets a scikit-learn estimator be
    registered as ONNX: skl2onnx converts it.
    """
    _check_flavor(flavor)
    try:
        if flavor == "onnx":
            return _onnx_bytes(model, sample), "model.onnx"
        if flavor == "sklearn":
            return bytes(_skops_io().dumps(model)), "model.skops"
        if flavor == "xgboost":
            booster = model.get_booster() if hasattr(model, "get_booster") else model
            return bytes(booster.save_raw("json")), "model.json"
        booster = model.booster_ if hasattr(model, "booster_") else model
        return str(booster.model_to_string()).encode("utf-8"), "model.txt"
    except InvalidInput:
        raise
    except Exception as exc:  # an unfitted model, or one of another flavor
        raise InvalidInput(
            f"cannot serialize a {type(model).__name__} as {flavor}: {_short(exc)}"
        ) from exc


def _check_flavor(flavor: str) -> None:
    if flavor not in FLAVORS:
        raise InvalidInput(
            f"unknown flavor {flavor!r}; known flavors: {', '.join(FLAVORS)}", field="flavor"
        )


def _onnx_bytes(model: Any, sample: Array | None) -> bytes:
    if isinstance(model, bytes | bytearray):
        return bytes(model)
    if callable(getattr(model, "SerializeToString", None)):
        return bytes(model.SerializeToString())
    if sample is None:
        raise InvalidInput(
            f"a {type(model).__name__} becomes ONNX only by conversion: pass a sample of inputs",
            field="sample",
        )
    from skl2onnx import to_onnx  # type: ignore[import-untyped]
    from sklearn.base import is_classifier  # type: ignore[import-untyped]

    # Without ZipMap, class probabilities come out as one tensor, not a list of dicts.
    options = {"zipmap": False} if is_classifier(model) else None
    return bytes(to_onnx(model, sample, options=options).SerializeToString())


def _single_matrix(inputs: dict[str, Array], features: int | None) -> Array:
    """Tabular models take one 2-D tensor: the only input given, or the one named "input"."""
    name = next(iter(inputs)) if len(inputs) == 1 else "input"
    if name not in inputs:
        raise InvalidInput(
            f"the model takes one input (or one named 'input'), not {sorted(inputs)}"
        )
    matrix = np.asarray(inputs[name])
    if matrix.ndim != 2 or (features is not None and matrix.shape[1] != features):
        wanted = f"(rows, {features if features is not None else 'features'})"
        raise InvalidInput(
            f"input {name!r} must have shape {wanted}, not {matrix.shape}", field=name
        )
    return matrix


def _not_loadable(flavor: str, filename: str, exc: BaseException) -> InvalidInput:
    return InvalidInput(f"{filename} does not load as {flavor}: {_short(exc)}")


def _short(exc: BaseException, limit: int = 200) -> str:
    # XGBoost and onnxruntime put paths and stack traces after the first line.
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
