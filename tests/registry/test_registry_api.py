"""`/api/v1/models`: versions registered from uploads, aliases, lifecycle, model cards and
version diffs, every change audited; and `capstan models` over the same API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression

from capstan.registry.profile import profile_of
from tests.apiclient import bearer, make_key
from tests.conftest import Capstan
from tests.test_cli import Cli


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite only: what is checked here does not depend on the database."""
    return f"sqlite:///{tmp_path}/capstan.db"


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(capsys, monkeypatch)


def onnx_bytes(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(100, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    model = LogisticRegression().fit(x, y)
    return bytes(to_onnx(model, x[:1], options={id(model): {"zipmap": False}}).SerializeToString())


def register(
    admin: httpx.Client, name: str = "churn", seed: int = 0, **fields: Any
) -> httpx.Response:
    upload = admin.post(
        "/api/v1/uploads", content=onnx_bytes(seed), headers={"x-capstan-filename": "model.onnx"}
    )
    assert upload.status_code == 201, upload.text
    return admin.post(
        f"/api/v1/models/{name}/versions",
        json={"upload": upload.json()["upload"], "flavor": "onnx", **fields},
    )


def test_a_version_records_its_artifact_hash_and_signature(admin: httpx.Client) -> None:
    response = register(admin, metrics={"auc": 0.91}, lineage={"code_commit": "abc123"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["version"], body["status"], body["metrics"]) == (1, "registered", {"auc": 0.91})
    assert len(body["artifact_sha256"]) == 64
    assert body["signature"]["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 3]}]
    assert body["lineage"] == {"code_commit": "abc123"}


def test_versions_number_up_and_an_alias_moves(admin: httpx.Client) -> None:
    register(admin, aliases=["champion"])
    register(admin, seed=1)
    moved = admin.put("/api/v1/models/churn/aliases/champion", json={"version": 2})
    assert moved.status_code == 200, moved.text
    model = admin.get("/api/v1/models/churn").json()
    assert (model["latest_version"], model["aliases"]) == (2, {"champion": 2})
    assert admin.get("/api/v1/models/churn/versions/champion").json()["version"] == 2


def test_the_lifecycle_refuses_a_jump_it_does_not_allow(admin: httpx.Client) -> None:
    register(admin)
    status = "/api/v1/models/churn/versions/1/status"
    assert admin.post(status, json={"status": "archived"}).status_code == 200
    refused = admin.post(status, json={"status": "production"})
    assert refused.status_code == 409
    assert "archived" in refused.json()["detail"]


def test_every_registry_change_is_audited(admin: httpx.Client) -> None:
    register(admin, aliases=["champion"])
    admin.post("/api/v1/models/churn/versions/1/status", json={"status": "staging"})
    actions = {
        e["action"] for e in admin.get("/api/v1/audit", params={"limit": 1000}).json()["items"]
    }
    assert {
        "model.create",
        "model.version.register",
        "model.alias.set",
        "model.version.staging",
    } <= actions


def test_an_upload_id_that_is_not_one_is_not_found(admin: httpx.Client) -> None:
    response = admin.post(
        "/api/v1/models/churn/versions", json={"upload": "../../master.key", "flavor": "onnx"}
    )
    assert response.status_code == 404


def test_an_upload_is_used_once_even_when_the_registration_is_refused(admin: httpx.Client) -> None:
    upload = admin.post(
        "/api/v1/uploads", content=onnx_bytes(), headers={"x-capstan-filename": "model.onnx"}
    ).json()["upload"]
    refused = admin.post(
        "/api/v1/models/Bad Name/versions", json={"upload": upload, "flavor": "onnx"}
    )
    assert refused.status_code == 422
    again = admin.post("/api/v1/models/churn/versions", json={"upload": upload, "flavor": "onnx"})
    assert again.status_code == 404


def test_a_file_name_with_a_folder_is_refused(admin: httpx.Client) -> None:
    response = admin.post(
        "/api/v1/uploads", content=b"x", headers={"x-capstan-filename": "../model.onnx"}
    )
    assert response.status_code == 422


def test_an_analyst_reads_the_registry_but_cannot_register(
    admin: httpx.Client, anonymous: httpx.Client
) -> None:
    register(admin)
    analyst = make_key(admin, "analyst")["key"]
    assert anonymous.get("/api/v1/models", headers=bearer(analyst)).status_code == 200
    refused = anonymous.post(
        "/api/v1/uploads", content=b"x", headers={**bearer(analyst), "x-capstan-filename": "m.onnx"}
    )
    assert refused.status_code == 403


def test_the_model_card_is_rendered_from_the_registry(admin: httpx.Client) -> None:
    profile = profile_of({"tenure": [1.0, 2.0, 3.0], "plan": ["a", "b", "a"]})
    register(admin, metrics={"auc": 0.91}, profile=profile, intended_use="Churn outreach.")
    card = admin.get("/api/v1/models/churn/versions/1/card")
    assert card.status_code == 200
    assert card.headers["content-type"].startswith("text/markdown")
    assert "Churn outreach." in card.text
    assert "tenure" in card.text
    html = admin.get("/api/v1/models/churn/versions/1/card", params={"format": "html"})
    assert html.headers["content-type"].startswith("text/html")
    assert "<table" in html.text


def test_a_diff_compares_two_versions(admin: httpx.Client) -> None:
    register(admin, metrics={"auc": 0.90})
    register(admin, seed=1, metrics={"auc": 0.93})
    diff = admin.get("/api/v1/models/churn/diff", params={"from": 1, "to": 2}).json()
    auc = next(m for m in diff["metrics"] if m["name"] == "auc")
    assert auc["change"] == pytest.approx(0.03)


def test_the_cli_registers_lists_and_renders_a_card(
    cli: Cli, capstan: Capstan, tmp_path: Path
) -> None:
    cli.local(capstan)
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(onnx_bytes())
    data = tmp_path / "train.csv"
    data.write_text("a,b,c,label\n1,2,3,0\n2,3,4,1\n3,4,5,0\n")
    code, out, err = cli(
        *("models", "register", str(artifact), "--name", "churn", "--flavor", "onnx"),
        *("--train-data", str(data), "--label", "label", "--metrics", "auc=0.9"),
        *("--alias", "champion"),
    )
    assert code == 0, err
    assert "registered churn v1 (champion)" in out
    assert "churn" in cli("models", "list")[1]
    card = cli("models", "card", "churn@1")[1]
    assert "train.csv" in card
    assert "auc" in card
    shown = cli.json("models", "show", "churn@1")
    assert shown["signature"]["columns"] == ["a", "b", "c"]  # the records form works


def test_the_cli_names_an_artifact_it_cannot_read(
    cli: Cli, capstan: Capstan, tmp_path: Path
) -> None:
    cli.local(capstan)
    code, _, err = cli(
        "models", "register", str(tmp_path / "missing.onnx"), "--name", "x", "--flavor", "onnx"
    )
    assert code != 0
    assert "cannot read" in err
    assert "Traceback" not in err
