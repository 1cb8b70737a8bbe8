"""Register → serve → feedback, for every flavor, through the real server: the artifact is
uploaded and registered over the control API, served through the Open Inference Protocol v2
(and its records form) with a service key, and the prediction id takes ground truth."""

from __future__ import annotations

import itertools
import os
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from capstan.serving.loaders import serialize_model
from tests.apiclient import bearer, make_key
from tests.gateway.setup import GatewayUnderTest, request_event

_names = itertools.count()
FEATURES = [f"f{i}" for i in range(4)]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    x, y = make_classification(n_samples=200, n_features=4, random_state=7)
    return x, y


@pytest.fixture
def http(gateway: GatewayUnderTest) -> Iterator[httpx.Client]:
    with gateway.admin() as client:
        yield client


@pytest.fixture
def service_key(http: httpx.Client) -> str:
    key: str = make_key(http, "service")["key"]
    return key


def register(
    http: httpx.Client, name: str, content: bytes, filename: str, **fields: Any
) -> httpx.Response:
    uploaded = http.post(
        "/api/v1/uploads", content=content, headers={"x-capstan-filename": filename}
    )
    assert uploaded.status_code == 201, uploaded.text
    return http.post(
        f"/api/v1/models/{name}/versions", json={"upload": uploaded.json()["upload"], **fields}
    )


TABULAR = {
    "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}],
    "outputs": [],
    "columns": FEATURES,
}


def sklearn_model(
    x: np.ndarray, y: np.ndarray
) -> tuple[bytes, str, dict[str, Any], Callable[[np.ndarray], np.ndarray]]:
    model = LogisticRegression().fit(x, y)
    content, filename = serialize_model(model, "sklearn")
    return content, filename, {"flavor": "sklearn", "signature": TABULAR}, model.predict


def onnx_model(
    x: np.ndarray, y: np.ndarray
) -> tuple[bytes, str, dict[str, Any], Callable[[np.ndarray], np.ndarray]]:
    from skl2onnx import to_onnx

    model = LogisticRegression().fit(x.astype(np.float32), y)
    proto = to_onnx(model, x[:1].astype(np.float32), options={id(model): {"zipmap": False}})
    content, filename = serialize_model(proto, "onnx")
    return (
        content,
        filename,
        {"flavor": "onnx"},
        lambda rows: model.predict(rows.astype(np.float32)),
    )


def xgboost_model(
    x: np.ndarray, y: np.ndarray
) -> tuple[bytes, str, dict[str, Any], Callable[[np.ndarray], np.ndarray]]:
    import xgboost

    model = xgboost.XGBClassifier(n_estimators=5, max_depth=2).fit(x, y)
    content, filename = serialize_model(model, "xgboost")
    return (
        content,
        filename,
        {"flavor": "xgboost", "signature": TABULAR},
        lambda rows: model.predict_proba(rows)[:, 1],
    )


def lightgbm_model(
    x: np.ndarray, y: np.ndarray
) -> tuple[bytes, str, dict[str, Any], Callable[[np.ndarray], np.ndarray]]:
    import lightgbm

    model = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1).fit(x, y)
    content, filename = serialize_model(model, "lightgbm")
    return (
        content,
        filename,
        {"flavor": "lightgbm", "signature": TABULAR},
        lambda rows: model.predict_proba(rows)[:, 1],
    )


FLAVORS = {
    "onnx": onnx_model,
    "sklearn": sklearn_model,
    "xgboost": xgboost_model,
    "lightgbm": lightgbm_model,
}


def first_output(body: dict[str, Any]) -> np.ndarray:
    output = body["outputs"][0]
    return np.asarray(output["data"]).reshape(output["shape"])


@pytest.mark.parametrize("flavor", list(FLAVORS))
def test_register_serve_and_take_feedback(
    gateway: GatewayUnderTest,
    http: httpx.Client,
    service_key: str,
    data: tuple[np.ndarray, np.ndarray],
    flavor: str,
) -> None:
    x, y = data
    content, filename, fields, predict = FLAVORS[flavor](x, y)
    name = f"credit-{flavor}-{next(_names)}"
    registered = register(http, name, content, filename, aliases=["champion"], **fields)
    assert registered.status_code == 201, registered.text
    assert registered.json()["aliases"] == ["champion"]

    rows = x[:3]
    # skl2onnx names the input `X`; the tabular signature names it `input`.
    input_name, datatype = ("X", "FP32") if flavor == "onnx" else ("input", "FP64")
    request = {
        "inputs": [
            {
                "name": input_name,
                "shape": [3, 4],
                "datatype": datatype,
                "data": rows.flatten().tolist(),
            }
        ]
    }
    answer = httpx.post(
        f"{gateway.url}/v2/models/{name}@champion/infer",
        json=request,
        headers=bearer(service_key),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    outputs = {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in body["outputs"]}
    expected = predict(rows)
    assert any(
        value.shape == expected.shape and np.allclose(value, expected, atol=1e-5)
        for value in outputs.values()
    ), (outputs, expected)

    prediction_id = body["parameters"]["prediction_id"]
    assert answer.headers["x-capstan-request-id"] == prediction_id
    event = request_event(http, prediction_id)
    assert (event["route"], event["deployment"]) == ("infer", f"{name}@1")
    feedback = httpx.post(
        f"{gateway.url}/api/v1/feedback",
        json={"request_id": prediction_id, "label": str(int(y[0]))},
        headers=bearer(service_key),
        timeout=10,
    )
    assert feedback.status_code == 201, feedback.text


def test_the_records_form_takes_named_features(
    gateway: GatewayUnderTest,
    http: httpx.Client,
    service_key: str,
    data: tuple[np.ndarray, np.ndarray],
) -> None:
    x, y = data
    content, filename, fields, predict = sklearn_model(x, y)
    name = f"records-{next(_names)}"
    assert register(http, name, content, filename, **fields).status_code == 201
    records = [dict(zip(FEATURES, row.tolist(), strict=True)) for row in x[:2]]
    answer = httpx.post(
        f"{gateway.url}/v2/models/{name}/infer",
        json={"inputs": records},
        headers=bearer(service_key),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert len(predictions) == 2
    labels = [p["label"] if isinstance(p, dict) else p for p in predictions]
    assert labels == predict(x[:2]).tolist()


def test_a_missing_input_is_a_400_in_the_oip_shape_that_names_it(
    gateway: GatewayUnderTest,
    http: httpx.Client,
    service_key: str,
    data: tuple[np.ndarray, np.ndarray],
) -> None:
    x, y = data
    content, filename, fields, _ = sklearn_model(x, y)
    name = f"strict-{next(_names)}"
    assert register(http, name, content, filename, **fields).status_code == 201
    answer = httpx.post(
        f"{gateway.url}/v2/models/{name}/infer",
        json={"inputs": [{"f0": 1.0, "f1": 2.0, "f2": 3.0}]},
        headers=bearer(service_key),
        timeout=10,
    )
    assert answer.status_code == 400
    assert set(answer.json()) == {"error"}
    assert "f3" in answer.json()["error"]


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pickle_is_refused_at_registration_without_running(
    http: httpx.Client, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    content = pickle.dumps(_Exploit(marker))
    refused = register(
        http, f"evil-{next(_names)}", content, "model.pkl", flavor="sklearn", signature=TABULAR
    )
    assert refused.status_code == 422, refused.text
    assert "system" in refused.json()["detail"]
    assert not marker.exists()


def test_a_tampered_artifact_is_refused_at_load_and_audited(
    gateway: GatewayUnderTest,
    http: httpx.Client,
    service_key: str,
    data: tuple[np.ndarray, np.ndarray],
) -> None:
    x, y = data
    content, filename, fields, _ = onnx_model(x, y)
    name = f"tampered-{next(_names)}"
    registered = register(http, name, content, filename, **fields)
    assert registered.status_code == 201, registered.text
    stored = Path(registered.json()["artifact_uri"].removeprefix("file://"))
    stored.write_bytes(stored.read_bytes() + b"\x00")
    request = {
        "inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": x[0].tolist()}]
    }
    answer = httpx.post(
        f"{gateway.url}/v2/models/{name}/infer",
        json=request,
        headers=bearer(service_key),
        timeout=30,
    )
    assert answer.status_code == 503, answer.text
    assert "integrity" in answer.json()["error"]
    again = httpx.post(
        f"{gateway.url}/v2/models/{name}/infer",
        json=request,
        headers=bearer(service_key),
        timeout=30,
    )
    assert again.status_code == 503
    entries = http.get("/api/v1/audit", params={"limit": 1000}).json()["items"]
    incidents = [e for e in entries if e["action"] == "model.artifact.tampered"]
    assert len(incidents) == 1  # one incident, not one per refused request


def test_an_oip_client_reads_health_metadata_and_inference(
    gateway: GatewayUnderTest,
    http: httpx.Client,
    service_key: str,
    data: tuple[np.ndarray, np.ndarray],
) -> None:
    import tritonclient.http as triton

    x, y = data
    content, filename, fields, predict = onnx_model(x, y)
    name = f"triton-{next(_names)}"
    assert register(http, name, content, filename, **fields).status_code == 201
    headers = bearer(service_key)
    client = triton.InferenceServerClient(url=gateway.url.removeprefix("http://"))
    try:
        assert client.is_server_live()
        assert client.is_model_ready(name, headers=headers)
        metadata = client.get_model_metadata(name, headers=headers)
        assert metadata["name"] == name
        assert [i["datatype"] for i in metadata["inputs"]] == ["FP32"]
        source = triton.InferInput(metadata["inputs"][0]["name"], [2, 4], "FP32")
        source.set_data_from_numpy(x[:2].astype(np.float32), binary_data=False)
        result = client.infer(name, [source], headers=headers)
        labels = result.as_numpy(metadata["outputs"][0]["name"])
        assert labels is not None
        assert labels.tolist() == predict(x[:2]).tolist()
    finally:
        client.close()


def test_registry_models_are_listed_by_v1_models(
    gateway: GatewayUnderTest,
    http: httpx.Client,
    service_key: str,
    data: tuple[np.ndarray, np.ndarray],
) -> None:
    x, y = data
    content, filename, fields, _ = sklearn_model(x, y)
    name = f"listed-{next(_names)}"
    assert register(http, name, content, filename, **fields).status_code == 201
    listed = httpx.get(f"{gateway.url}/v1/models", headers=bearer(service_key), timeout=10).json()
    owners = {m["id"]: m["owned_by"] for m in listed["data"]}
    assert owners[name] == "capstan-registry"
    assert owners["chat-default"] == "capstan"


def test_inputs_and_outputs_are_logged_only_for_a_project_that_opts_in(
    gateway: GatewayUnderTest, http: httpx.Client, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = data
    content, filename, fields, _ = sklearn_model(x, y)
    name = f"logged-{next(_names)}"
    assert register(http, name, content, filename, **fields).status_code == 201
    for path, body in [
        ("/api/v1/departments", {"name": "scoring-dept"}),
        ("/api/v1/teams", {"name": "scoring-team", "department": "scoring-dept"}),
        ("/api/v1/projects", {"name": "scoring", "team": "scoring-team", "log_payloads": True}),
        ("/api/v1/projects", {"name": "quiet", "team": "scoring-team"}),
    ]:
        assert http.post(path, json=body).status_code == 201
    analyst = make_key(http, "analyst")["key"]
    rows = {"inputs": [dict(zip(FEATURES, x[0].tolist(), strict=True))]}
    payloads = {}
    for project in ("scoring", "quiet"):
        key = make_key(http, "service", project=project)["key"]
        answer = httpx.post(
            f"{gateway.url}/v2/models/{name}/infer", json=rows, headers=bearer(key), timeout=30
        )
        assert answer.status_code == 200, answer.text
        request_event(http, answer.headers["x-capstan-request-id"])  # landed
        with httpx.Client(base_url=gateway.url, headers=bearer(analyst), timeout=10) as reader:
            event = reader.get(f"/api/v1/requests/{answer.headers['x-capstan-request-id']}")
        payloads[project] = event.json()["payload"]
    assert payloads["quiet"] is None
    assert payloads["scoring"]["request"] == rows
    assert "label" in payloads["scoring"]["response"]
