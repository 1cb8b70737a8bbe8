"""`capstan.registry.log_model`: a model registered from a notebook in one call, against a real
server (or the local home in this process), with its signature, profile and lineage derived
from the training data, and servable as soon as it returns."""

from __future__ import annotations

import itertools
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from capstan.cli.client import local_app
from capstan.registry import RegisteredVersion, RegistryError, log_model, train_data_sha256
from tests.conftest import TEST_MASTER_KEY, Capstan
from tests.databases import SqliteTemplate
from tests.servers import RunningServer

FEATURES = ["age", "income", "score", "tenure"]
_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


@pytest.fixture
def database_url(sqlite_template: SqliteTemplate, tmp_path: Path) -> str:
    """SQLite only: what log_model sends is the same whatever the server stores it in."""
    return sqlite_template.clone(tmp_path / "capstan.db")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    x, y = make_classification(n_samples=200, n_features=4, random_state=7)
    data = pd.DataFrame(x, columns=FEATURES)
    data["default"] = y
    return data


@pytest.fixture(scope="module")
def classifier(frame: pd.DataFrame) -> LogisticRegression:
    return LogisticRegression().fit(frame[FEATURES], frame["default"])


@dataclass(frozen=True)
class Remote:
    url: str
    api_key: str


@pytest.fixture
def remote(server: RunningServer, capstan: Capstan) -> Remote:
    return Remote(server.url, capstan.admin_key)


def version_of(admin: httpx.Client, name: str, version: int = 1) -> dict[str, Any]:
    response = admin.get(f"/api/v1/models/{name}/versions/{version}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def infer_records(admin: httpx.Client, logged: RegisteredVersion, rows: pd.DataFrame) -> list[Any]:
    records = rows[FEATURES].to_dict(orient="records")
    response = admin.post(logged.url, json={"inputs": records}, timeout=30)
    assert response.status_code == 200, response.text
    predictions: list[Any] = response.json()["predictions"]
    return predictions


def test_a_scikit_learn_model_is_logged_as_skops_with_its_signature_and_profile(
    admin: httpx.Client,
    remote: Remote,
    frame: pd.DataFrame,
    classifier: LogisticRegression,
) -> None:
    name = unique("credit-risk")
    logged = log_model(
        classifier,
        name=name,
        train_data=frame,
        label="default",
        url=remote.url,
        api_key=remote.api_key,
    )

    assert (logged.name, logged.version, logged.flavor) == (name, 1, "sklearn")
    assert logged.signature["columns"] == FEATURES
    assert logged.url == f"/v2/models/{name}/versions/1/infer"
    stored = version_of(admin, name)
    assert stored["artifact_sha256"] == logged.artifact_sha256
    assert list(stored["profile"]["columns"]) == FEATURES  # the label is not a feature
    assert stored["profile"]["rows"] == len(frame)


def test_the_training_data_hash_is_recorded_and_reproducible(
    admin: httpx.Client,
    remote: Remote,
    frame: pd.DataFrame,
    classifier: LogisticRegression,
) -> None:
    name = unique("credit-risk")
    for _ in range(2):
        log_model(
            classifier,
            name=name,
            train_data=frame,
            label="default",
            url=remote.url,
            api_key=remote.api_key,
        )

    first, second = (version_of(admin, name, v)["lineage"] for v in (1, 2))
    assert first["train_data_sha256"] == second["train_data_sha256"] == train_data_sha256(frame)


def test_the_hash_depends_on_the_values_not_on_the_container() -> None:
    columns = {"age": [31.0, 45.5, 52.0], "city": ["Lyon", None, "Paris"], "default": [0, 1, 0]}

    assert train_data_sha256(columns) == train_data_sha256(pd.DataFrame(columns))


def test_missing_text_hashes_alike_however_it_is_spelled() -> None:
    spellings = [None, float("nan"), pd.NA]

    hashes = {train_data_sha256(pd.DataFrame({"city": ["Lyon", m]})) for m in spellings}

    assert len(hashes) == 1


def test_the_hash_changes_with_any_value(frame: pd.DataFrame) -> None:
    changed = frame.copy()
    changed.loc[17, "default"] = 1 - changed.loc[17, "default"]

    assert train_data_sha256(changed) != train_data_sha256(frame)


def test_a_scikit_learn_model_logged_as_onnx_serves_records(
    admin: httpx.Client,
    remote: Remote,
    frame: pd.DataFrame,
    classifier: LogisticRegression,
) -> None:
    name = unique("credit-onnx")
    logged = log_model(
        classifier,
        name=name,
        flavor="onnx",
        train_data=frame,
        label="default",
        url=remote.url,
        api_key=remote.api_key,
    )

    assert logged.flavor == "onnx"
    assert logged.signature["columns"] == FEATURES
    rows = frame.head(8)
    predictions = infer_records(admin, logged, rows)
    labels = [p["label"] if isinstance(p, dict) else p for p in predictions]
    assert labels == classifier.predict(rows[FEATURES]).tolist()


def test_an_xgboost_model_is_logged_and_serves_records(
    admin: httpx.Client, remote: Remote, frame: pd.DataFrame
) -> None:
    import xgboost

    model = xgboost.XGBClassifier(n_estimators=5, max_depth=2)
    model.fit(frame[FEATURES], frame["default"])
    logged = log_model(
        model,
        name=unique("credit-xgb"),
        train_data=frame,
        label="default",
        url=remote.url,
        api_key=remote.api_key,
    )

    assert logged.flavor == "xgboost"
    rows = frame.head(5)
    served = infer_records(admin, logged, rows)
    assert np.allclose(served, np.asarray(model.predict_proba(rows[FEATURES]))[:, 1], atol=1e-6)


def test_a_lightgbm_model_is_logged_and_serves_records(
    admin: httpx.Client, remote: Remote, frame: pd.DataFrame
) -> None:
    import lightgbm

    model = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1)
    model.fit(frame[FEATURES], frame["default"])
    logged = log_model(
        model,
        name=unique("credit-lgb"),
        train_data=frame,
        label="default",
        url=remote.url,
        api_key=remote.api_key,
    )

    assert logged.flavor == "lightgbm"
    rows = frame.head(5)
    served = infer_records(admin, logged, rows)
    assert np.allclose(served, np.asarray(model.predict_proba(rows[FEATURES]))[:, 1], atol=1e-6)


def test_aliases_point_at_the_new_version(
    admin: httpx.Client,
    remote: Remote,
    frame: pd.DataFrame,
    classifier: LogisticRegression,
) -> None:
    name = unique("credit-risk")
    logged = log_model(
        classifier,
        name=name,
        train_data=frame,
        label="default",
        aliases=["champion", "candidate"],
        url=remote.url,
        api_key=remote.api_key,
    )

    assert sorted(logged.aliases) == ["candidate", "champion"]
    assert admin.get(f"/api/v1/models/{name}").json()["aliases"] == {
        "candidate": 1,
        "champion": 1,
    }


def test_metrics_params_tags_and_model_fields_are_recorded(
    admin: httpx.Client,
    remote: Remote,
    frame: pd.DataFrame,
    classifier: LogisticRegression,
) -> None:
    name = unique("credit-risk")
    log_model(
        classifier,
        name=name,
        train_data=frame,
        label="default",
        metrics={"auc": np.float32(0.5)},
        params=classifier.get_params(),
        tags={"team": "credit"},
        owner="ana@example.com",
        risk_tier="high",
        train_data_uri="s3://bucket/credit.parquet",
        url=remote.url,
        api_key=remote.api_key,
    )

    stored = version_of(admin, name)
    assert stored["metrics"] == {"auc": 0.5}
    assert stored["params"]["C"] == 1.0
    assert stored["tags"] == {"team": "credit"}
    assert stored["lineage"]["train_data_uri"] == "s3://bucket/credit.parquet"
    model = admin.get(f"/api/v1/models/{name}").json()
    assert (model["owner"], model["risk_tier"]) == ("ana@example.com", "high")


def test_a_name_the_registry_refuses_is_a_registry_error_with_its_detail(
    remote: Remote, frame: pd.DataFrame, classifier: LogisticRegression
) -> None:
    with pytest.raises(RegistryError) as refused:
        log_model(
            classifier,
            name="Credit Risk",
            train_data=frame,
            label="default",
            url=remote.url,
            api_key=remote.api_key,
        )

    assert refused.value.status == 422
    assert refused.value.detail.startswith("a model name is 1 to 100 lower-case letters")


def test_the_server_and_key_come_from_the_environment(
    admin: httpx.Client,
    server: RunningServer,
    capstan: Capstan,
    monkeypatch: pytest.MonkeyPatch,
    frame: pd.DataFrame,
    classifier: LogisticRegression,
) -> None:
    monkeypatch.setenv("CAPSTAN_URL", server.url)
    monkeypatch.setenv("CAPSTAN_API_KEY", capstan.admin_key)
    name = unique("credit-risk")

    log_model(classifier, name=name, train_data=frame, label="default")

    assert version_of(admin, name)["flavor"] == "sklearn"


def test_a_server_without_a_key_is_refused_before_anything_is_sent(
    frame: pd.DataFrame, classifier: LogisticRegression
) -> None:
    with pytest.raises(ValueError, match="CAPSTAN_API_KEY"):
        log_model(classifier, name="credit-risk", train_data=frame, url="http://127.0.0.1:9")


def test_a_wrong_key_is_a_registry_error_with_status_401(
    server: RunningServer, frame: pd.DataFrame, classifier: LogisticRegression
) -> None:
    with pytest.raises(RegistryError) as refused:
        log_model(
            classifier, name="credit-risk", train_data=frame, url=server.url, api_key="cap_wrong"
        )

    assert refused.value.status == 401


def test_an_unreachable_server_is_a_registry_error_without_status(
    frame: pd.DataFrame, classifier: LogisticRegression
) -> None:
    with pytest.raises(RegistryError, match="cannot reach Capstan") as failed:
        log_model(
            classifier,
            name="credit-risk",
            train_data=frame,
            url="http://127.0.0.1:9",
            api_key="cap_x",
        )

    assert failed.value.status is None


@pytest.fixture
def local_home(capstan: Capstan, monkeypatch: pytest.MonkeyPatch) -> Capstan:
    """No server: `CAPSTAN_HOME` and its settings, as the CLI's local mode reads them."""
    monkeypatch.setenv("CAPSTAN_HOME", str(capstan.settings.home))
    monkeypatch.setenv("CAPSTAN_DATABASE_URL", capstan.settings.resolved_database_url)
    monkeypatch.setenv("CAPSTAN_MASTER_KEY", TEST_MASTER_KEY)
    return capstan


def test_without_a_server_the_model_is_registered_in_the_local_home(
    local_home: Capstan, frame: pd.DataFrame, classifier: LogisticRegression
) -> None:
    name = unique("credit-local")
    logged = log_model(classifier, name=name, train_data=frame, label="default")

    assert logged.version == 1
    with local_app() as http:
        stored = http.get(f"/api/v1/models/{name}/versions/1").json()
    assert stored["artifact_sha256"] == logged.artifact_sha256
    assert list(stored["profile"]["columns"]) == FEATURES


def test_without_a_server_or_a_home_the_error_says_what_to_do(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    frame: pd.DataFrame,
    classifier: LogisticRegression,
) -> None:
    monkeypatch.setenv("CAPSTAN_HOME", str(tmp_path / "nowhere"))

    with pytest.raises(RegistryError, match="capstan init") as failed:
        log_model(classifier, name="credit-risk", train_data=frame, label="default")

    assert failed.value.status is None


def test_the_code_commit_is_the_current_checkouts_head(
    local_home: Capstan,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    frame: pd.DataFrame,
    classifier: LogisticRegression,
) -> None:
    checkout = tmp_path / "training"
    checkout.mkdir()
    git = ["git", "-C", str(checkout), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "--quiet"], check=True)
    subprocess.run([*git, "commit", "--quiet", "--allow-empty", "-m", "train"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    monkeypatch.chdir(checkout)
    name = unique("credit-local")

    log_model(classifier, name=name, train_data=frame, label="default")

    with local_app() as http:
        lineage = http.get(f"/api/v1/models/{name}/versions/1").json()["lineage"]
    assert lineage["code_commit"] == head


def test_outside_a_checkout_no_code_commit_is_recorded(
    local_home: Capstan,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    frame: pd.DataFrame,
    classifier: LogisticRegression,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    name = unique("credit-local")

    log_model(classifier, name=name, train_data=frame, label="default")

    with local_app() as http:
        lineage = http.get(f"/api/v1/models/{name}/versions/1").json()["lineage"]
    assert "code_commit" not in lineage


def test_a_2d_array_s_features_are_named_f0_f1_and_so_on(
    local_home: Capstan, frame: pd.DataFrame, classifier: LogisticRegression
) -> None:
    array = frame[FEATURES].to_numpy()

    logged = log_model(classifier, name=unique("credit-local"), train_data=array)

    assert logged.signature["columns"] == ["f0", "f1", "f2", "f3"]
    assert logged.signature["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]


def test_a_dict_of_columns_gives_the_signature_of_the_same_dataframe(
    local_home: Capstan, frame: pd.DataFrame, classifier: LogisticRegression
) -> None:
    columns = {column: frame[column].tolist() for column in frame.columns}

    from_dict = log_model(
        classifier, name=unique("credit-local"), train_data=columns, label="default"
    )
    from_frame = log_model(
        classifier, name=unique("credit-local"), train_data=frame, label="default"
    )

    assert from_dict.signature == from_frame.signature


def test_a_label_the_training_data_lacks_is_refused_before_anything_is_sent(
    frame: pd.DataFrame, classifier: LogisticRegression
) -> None:
    with pytest.raises(ValueError, match="no column 'target'"):
        log_model(classifier, name="credit-risk", train_data=frame, label="target")


def test_a_model_of_unknown_flavor_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="cannot tell the flavor"):
        log_model(object(), name="credit-risk")


def test_a_non_onnx_model_without_training_data_or_signature_is_refused(
    classifier: LogisticRegression,
) -> None:
    with pytest.raises(ValueError, match="train_data="):
        log_model(classifier, name="credit-risk")


def test_the_client_is_not_loaded_by_the_registry_s_server_modules() -> None:
    code = (
        "import sys, capstan.registry.service, capstan.registry.api; "
        "assert 'capstan.registry.client' not in sys.modules; "
        "import capstan.registry as r; r.log_model; "
        "assert 'capstan.registry.client' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_onnx_model_keeps_its_own_signature_with_the_feature_names(
    local_home: Capstan, frame: pd.DataFrame, classifier: LogisticRegression
) -> None:
    from skl2onnx import to_onnx

    proto = to_onnx(classifier, frame[FEATURES].to_numpy(np.float32)[:1])

    logged = log_model(proto, name=unique("credit-local"), train_data=frame, label="default")

    assert logged.flavor == "onnx"
    assert logged.signature["inputs"][0]["name"] == "X"
    assert logged.signature["columns"] == FEATURES


def test_a_derived_version_names_its_parent(
    admin: httpx.Client,
    remote: Remote,
    frame: pd.DataFrame,
    classifier: LogisticRegression,
) -> None:
    name = unique("credit-risk")
    for parent in (None, 1):
        log_model(
            classifier,
            name=name,
            train_data=frame,
            label="default",
            parent_version=parent,
            url=remote.url,
            api_key=remote.api_key,
        )
    assert version_of(admin, name, 2)["lineage"]["parent_version"] == 1
    assert "parent_version" not in version_of(admin, name, 1)["lineage"]
