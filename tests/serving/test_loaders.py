"""Each flavor's artifact loads from bytes and predicts what the model it was made from predicts."""

from __future__ import annotations

import pickle
from typing import Any

import lightgbm
import numpy as np
import pytest
import xgboost
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, ClassifierMixin  # type: ignore[import-untyped]
from sklearn.datasets import make_classification  # type: ignore[import-untyped]
from sklearn.ensemble import RandomForestClassifier  # type: ignore[import-untyped]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

from capstan.errors import InvalidInput
from capstan.serving.loaders import FLAVORS, flavor_of, load_model, serialize_model


def dataset() -> tuple[NDArray[np.float32], NDArray[Any]]:
    features, labels = make_classification(n_samples=60, n_features=4, random_state=0)
    return features.astype(np.float32), labels


class FirstFeatureThreshold(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A custom estimator: skops knows nothing of this module, so it is an untrusted type."""

    def fit(self, features: NDArray[Any], labels: NDArray[Any]) -> FirstFeatureThreshold:
        self.threshold_ = float(np.median(features[:, 0]))
        self.classes_ = np.unique(labels)
        return self

    def predict(self, features: NDArray[Any]) -> NDArray[Any]:
        return (features[:, 0] > self.threshold_).astype(np.int64)


CUSTOM_TYPE = f"{FirstFeatureThreshold.__module__}.{FirstFeatureThreshold.__qualname__}"


def test_an_onnx_model_predicts_what_the_estimator_predicts() -> None:
    features, labels = dataset()
    model = LogisticRegression().fit(features, labels)
    data, filename = serialize_model(model, "onnx", sample=features[:1])
    loaded = load_model("onnx", data, filename=filename)
    outputs = loaded.predict({"X": features})
    assert (loaded.flavor, filename) == ("onnx", "model.onnx")
    assert set(outputs) == {"label", "probabilities"}
    assert np.array_equal(outputs["label"], model.predict(features))
    assert np.allclose(outputs["probabilities"], model.predict_proba(features), atol=1e-5)


def test_an_onnx_model_takes_float64_rows_for_its_float32_input() -> None:
    features, labels = dataset()
    model = LogisticRegression().fit(features, labels)
    data, filename = serialize_model(model, "onnx", sample=features[:1])
    outputs = load_model("onnx", data, filename=filename).predict({"X": features.astype(float)})
    assert np.array_equal(outputs["label"], model.predict(features))


def test_an_onnx_model_refuses_inputs_it_does_not_take() -> None:
    features, labels = dataset()
    data, filename = serialize_model(
        LogisticRegression().fit(features, labels), "onnx", sample=features[:1]
    )
    with pytest.raises(InvalidInput):
        load_model("onnx", data, filename=filename).predict({"rows": features})


def test_a_skops_model_predicts_labels_and_probabilities() -> None:
    features, labels = dataset()
    model = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0)
    model.fit(features, labels)
    data, filename = serialize_model(model, "sklearn")
    loaded = load_model("sklearn", data, filename=filename)
    outputs = loaded.predict({"input": features})
    assert filename == "model.skops"
    assert np.array_equal(outputs["label"], model.predict(features))
    assert np.allclose(outputs["probabilities"], model.predict_proba(features))


def test_a_pickled_model_loads_from_a_pkl_file() -> None:
    features, labels = dataset()
    model = LogisticRegression().fit(features, labels)
    loaded = load_model("sklearn", pickle.dumps(model), filename="model.pkl")
    assert np.array_equal(loaded.predict({"input": features})["label"], model.predict(features))


def test_skops_refuses_a_custom_type_nobody_trusted() -> None:
    features, labels = dataset()
    data, filename = serialize_model(FirstFeatureThreshold().fit(features, labels), "sklearn")
    with pytest.raises(InvalidInput) as caught:
        load_model("sklearn", data, filename=filename)
    assert CUSTOM_TYPE in caught.value.detail


def test_skops_loads_a_custom_type_once_it_is_trusted() -> None:
    features, labels = dataset()
    model = FirstFeatureThreshold().fit(features, labels)
    data, filename = serialize_model(model, "sklearn")
    loaded = load_model("sklearn", data, filename=filename, trusted_types=[CUSTOM_TYPE])
    assert np.array_equal(loaded.predict({"input": features})["label"], model.predict(features))


def test_an_xgboost_model_outputs_the_probability_of_class_one() -> None:
    features, labels = dataset()
    model = xgboost.XGBClassifier(n_estimators=3, max_depth=2, n_jobs=1).fit(features, labels)
    data, filename = serialize_model(model, "xgboost")
    outputs = load_model("xgboost", data, filename=filename).predict({"input": features})
    assert filename == "model.json"
    assert np.allclose(outputs["output"], model.predict_proba(features)[:, 1])


def test_a_lightgbm_model_outputs_the_probability_of_class_one() -> None:
    features, labels = dataset()
    model = lightgbm.LGBMClassifier(
        n_estimators=3, num_leaves=4, min_child_samples=2, n_jobs=1, verbose=-1
    ).fit(features, labels)
    data, filename = serialize_model(model, "lightgbm")
    outputs = load_model("lightgbm", data, filename=filename).predict({"input": features})
    assert filename == "model.txt"
    assert np.allclose(outputs["output"], np.asarray(model.predict_proba(features))[:, 1])


def test_a_tabular_model_refuses_rows_of_the_wrong_width() -> None:
    features, labels = dataset()
    data, filename = serialize_model(LogisticRegression().fit(features, labels), "sklearn")
    with pytest.raises(InvalidInput):
        load_model("sklearn", data, filename=filename).predict({"input": features[:, :3]})


def test_an_unknown_flavor_is_invalid_and_names_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as caught:
        load_model("tensorflow", b"", filename="model.pb")
    assert all(flavor in caught.value.detail for flavor in FLAVORS)


@pytest.mark.parametrize(
    ("flavor", "filename"),
    [
        ("onnx", "model.onnx"),
        ("sklearn", "model.skops"),
        ("sklearn", "model.pkl"),
        ("xgboost", "model.json"),
        ("lightgbm", "model.txt"),
    ],
)
def test_garbage_bytes_do_not_load(flavor: str, filename: str) -> None:
    with pytest.raises(InvalidInput):
        load_model(flavor, b"\xff\xfe not a model at all \x00", filename=filename)


def test_in_memory_models_are_told_apart_by_class() -> None:
    features, labels = dataset()
    forest = RandomForestClassifier(n_estimators=2, max_depth=2).fit(features, labels)
    boosted = xgboost.XGBClassifier(n_estimators=2, max_depth=2, n_jobs=1).fit(features, labels)
    onnx_model = pytest.importorskip("skl2onnx").to_onnx(forest, features[:1])
    assert flavor_of(forest) == "sklearn"
    assert flavor_of(boosted) == "xgboost"
    assert flavor_of(boosted.get_booster()) == "xgboost"
    assert flavor_of(lightgbm.LGBMClassifier()) == "lightgbm"
    assert flavor_of(onnx_model) == "onnx"
    with pytest.raises(InvalidInput):
        flavor_of(object())
