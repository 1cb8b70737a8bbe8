"""The demo's credit-risk model: synthetic loan applications, a classifier trained on them and
served as ONNX, and its registration with the sample bias and drift work will reuse."""

from __future__ import annotations

import csv
import hashlib

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]

from capstan.bootstrap import system_principal
from capstan.demo_models import (
    FEATURES,
    LABEL,
    PROTECTED,
    feature_matrix,
    fit_credit_risk,
    loan_applications,
    register_credit_risk,
    split_applications,
    train_credit_risk,
)
from capstan.identity.principal import Principal
from tests.conftest import Capstan


def admin_of(capstan: Capstan) -> Principal:
    return system_principal(capstan.services.directory.organization())


def test_applications_are_the_same_for_the_same_seed_and_differ_across_seeds() -> None:
    first, again, other = (
        loan_applications(500, 3),
        loan_applications(500, 3),
        loan_applications(500, 4),
    )

    assert all(np.array_equal(first[name], again[name]) for name in first)
    assert not np.array_equal(first["income"], other["income"])


def test_applications_have_the_six_features_the_protected_group_and_the_label() -> None:
    data = loan_applications(1000)

    assert list(data) == [*FEATURES, PROTECTED, LABEL]
    assert FEATURES == (
        "income",
        "debt_to_income",
        "credit_history_years",
        "loan_amount",
        "late_payments_2y",
        "employment_years",
    )
    assert all(len(values) == 1000 for values in data.values())
    assert set(data[PROTECTED].tolist()) == {"A", "B"}
    assert set(data[LABEL].tolist()) == {0, 1}


def test_applications_stay_within_their_documented_ranges() -> None:
    data = loan_applications()

    assert data["income"].min() >= 12_000
    assert data["debt_to_income"].min() >= 0
    assert data["debt_to_income"].max() <= 0.8
    assert data["credit_history_years"].min() >= 0
    assert data["credit_history_years"].max() <= 40
    assert data["loan_amount"].min() >= 1_000
    assert data["late_payments_2y"].dtype == np.int64
    assert data["late_payments_2y"].min() >= 0
    assert data["employment_years"].min() >= 0


def test_the_protected_group_goes_with_lower_income_and_shorter_history() -> None:
    data = loan_applications()
    in_b = (data[PROTECTED] == "B").astype(float)

    assert np.corrcoef(in_b, data["income"])[0, 1] < -0.2
    assert np.corrcoef(in_b, data["credit_history_years"])[0, 1] < -0.2


def test_default_rate_is_plausible_and_higher_in_the_poorer_group() -> None:
    data = loan_applications()
    default, group = data[LABEL], data[PROTECTED]

    assert 0.05 <= default.mean() <= 0.30
    assert default[group == "B"].mean() > default[group == "A"].mean()


def test_training_separates_defaulters_and_shows_a_gap_between_groups() -> None:
    _, metrics = train_credit_risk(loan_applications())

    assert set(metrics) == {"auc", "accuracy", "approval_rate_gap"}
    assert metrics["auc"] > 0.7
    assert 0.7 < metrics["accuracy"] <= 1
    assert metrics["approval_rate_gap"] > 0  # group A approved more often, unseen group or not


def test_the_onnx_model_gives_the_pipelines_probabilities() -> None:
    data = loan_applications()
    model, _ = train_credit_risk(data)
    pipeline = fit_credit_risk(split_applications(data)[0])
    features = feature_matrix(data)

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    (only,) = session.get_inputs()
    labels, probabilities = session.run(
        ["label", "probabilities"], {"input": features.astype(np.float32)}
    )

    assert (only.name, only.shape[1]) == ("input", len(FEATURES))
    assert np.allclose(probabilities, pipeline.predict_proba(features), atol=1e-5)
    assert np.array_equal(labels, pipeline.predict(features))


def test_registering_makes_v1_the_champion_with_metrics_profile_and_lineage(
    capstan: Capstan,
) -> None:
    admin = admin_of(capstan)
    home = capstan.settings.home

    register_credit_risk(capstan.services, admin, home)
    model, version, aliases = capstan.services.registry.version(admin, "credit-risk")

    data = loan_applications(5000, 7)
    assert (version.version, version.flavor, aliases) == (1, "onnx", {"champion": 1})
    assert (model.owner, model.risk_tier) == ("credit-risk team", "high")
    assert (model.intended_use or "").startswith("Illustrative only")
    assert set(version.metrics) == {"auc", "accuracy", "approval_rate_gap"}
    assert version.metrics["auc"] > 0.7
    assert version.profile is not None
    assert list(version.profile["columns"]) == list(FEATURES)  # the group is not a model input
    assert version.profile["rows"] == 5000
    assert version.lineage["train_data_uri"] == "synthetic:loan_applications(rows=5000, seed=7)"
    assert (
        version.lineage["train_data_sha256"]
        == hashlib.sha256(feature_matrix(data).tobytes()).hexdigest()
    )
    assert version.signature["columns"] == list(FEATURES)  # so clients can send records


def test_registering_saves_the_whole_sample_for_bias_and_drift_work(capstan: Capstan) -> None:
    home = capstan.settings.home

    register_credit_risk(capstan.services, admin_of(capstan), home)
    with (home / "demo" / "loan_applications.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))

    data = loan_applications()
    assert list(rows[0]) == [*FEATURES, PROTECTED, LABEL]
    assert len(rows) == 5000
    assert [float(row["income"]) for row in rows] == data["income"].tolist()
    assert [row[PROTECTED] for row in rows] == data[PROTECTED].tolist()
    assert [int(row[LABEL]) for row in rows] == data[LABEL].tolist()


def test_registering_again_registers_nothing(capstan: Capstan) -> None:
    admin = admin_of(capstan)
    home = capstan.settings.home

    register_credit_risk(capstan.services, admin, home)
    register_credit_risk(capstan.services, admin, home)
    _, versions, aliases = capstan.services.registry.model(admin, "credit-risk")

    assert [v.version for v in versions] == [1]
    assert aliases == {"champion": 1}


def test_registering_again_restores_a_deleted_sample_without_a_new_version(
    capstan: Capstan,
) -> None:
    admin = admin_of(capstan)
    sample = capstan.settings.home / "demo" / "loan_applications.csv"
    register_credit_risk(capstan.services, admin, capstan.settings.home)
    written = sample.read_bytes()
    sample.unlink()

    register_credit_risk(capstan.services, admin, capstan.settings.home)
    _, versions, _ = capstan.services.registry.model(admin, "credit-risk")

    assert sample.read_bytes() == written
    assert [v.version for v in versions] == [1]
