"""Pickle-bearing artifacts are judged by picklescan, by content, and refused when in doubt."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pytest
import skops.io  # type: ignore[import-untyped]
import xgboost
from skl2onnx import to_onnx  # type: ignore[import-untyped]
from sklearn.datasets import make_classification  # type: ignore[import-untyped]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

from capstan.registry.scanning import UnsafeArtifact, require_safe, scan_artifact

SYSTEM = f"{os.system.__module__}.system"  # "posix.system" where the tests run


class RunsShell:
    """Unpickling this runs a shell command: what a hostile model file does."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


def hostile_pickle(marker: Path, protocol: int = pickle.DEFAULT_PROTOCOL) -> bytes:
    return pickle.dumps(RunsShell(f"touch {marker}"), protocol=protocol)


def tiny_classifier() -> tuple[LogisticRegression, np.ndarray[Any, Any]]:
    features, labels = make_classification(n_samples=40, n_features=4, random_state=0)
    return LogisticRegression().fit(features, labels), features.astype(np.float32)


def test_a_pickle_that_runs_a_command_is_unsafe_and_the_command_never_runs(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "pwned"
    artifact = tmp_path / "model.pkl"
    artifact.write_bytes(hostile_pickle(marker))
    report = scan_artifact(artifact)
    assert not report.safe
    assert report.scanned_files == 1
    assert report.issues == (f"model.pkl: {SYSTEM} (dangerous global)",)
    assert not marker.exists()


def test_require_safe_refuses_the_hostile_pickle_with_the_summary(tmp_path: Path) -> None:
    artifact = tmp_path / "model.pkl"
    artifact.write_bytes(hostile_pickle(tmp_path / "pwned"))
    with pytest.raises(UnsafeArtifact) as caught:
        require_safe(artifact)
    assert caught.value.status == 422
    assert caught.value.detail == caught.value.report.summary()
    assert SYSTEM in caught.value.detail


def test_a_pickled_scikit_learn_model_is_safe(tmp_path: Path) -> None:
    model, _ = tiny_classifier()
    artifact = tmp_path / "model.pkl"
    artifact.write_bytes(pickle.dumps(model))
    report = require_safe(artifact)
    assert report.scanned_files == 1
    assert report.issues == ()
    assert "sklearn.linear_model._logistic.LogisticRegression" in report.suspicious


def test_an_onnx_file_is_safe_with_no_pickle_scanned(tmp_path: Path) -> None:
    model, features = tiny_classifier()
    artifact = tmp_path / "model.onnx"
    onnx_model = to_onnx(model, features[:1], options={"zipmap": False})
    artifact.write_bytes(onnx_model.SerializeToString())
    report = scan_artifact(artifact)
    assert report.safe
    assert report.scanned_files == 0


def test_native_xgboost_and_lightgbm_files_are_safe_with_no_pickle_scanned(
    tmp_path: Path,
) -> None:
    features, labels = make_classification(n_samples=40, n_features=4, random_state=0)
    booster = xgboost.XGBClassifier(n_estimators=2, max_depth=2).fit(features, labels)
    lgbm = lightgbm.LGBMClassifier(n_estimators=2, num_leaves=4, min_child_samples=2, verbose=-1)
    files = {
        "model.json": bytes(booster.get_booster().save_raw("json")),
        "model.ubj": bytes(booster.get_booster().save_raw("ubj")),
        "model.txt": lgbm.fit(features, labels).booster_.model_to_string().encode(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        report = scan_artifact(tmp_path / name)
        assert (name, report.safe, report.scanned_files) == (name, True, 0)


def test_a_hostile_pickle_named_onnx_is_still_caught(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(hostile_pickle(marker))
    report = scan_artifact(artifact)
    assert not report.safe
    assert report.scanned_files == 1
    assert not marker.exists()


def test_a_headerless_protocol_0_pickle_named_onnx_is_still_caught(tmp_path: Path) -> None:
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(hostile_pickle(tmp_path / "pwned", protocol=0))
    report = scan_artifact(artifact)
    assert not report.safe
    assert f"model.onnx: {SYSTEM} (dangerous global)" in report.issues


def test_a_hostile_pickle_inside_a_zip_archive_is_caught(tmp_path: Path) -> None:
    artifact = tmp_path / "model.skops"
    with zipfile.ZipFile(artifact, "w") as archive:
        archive.writestr("schema.json", "{}")
        archive.writestr("payload.bin", hostile_pickle(tmp_path / "pwned"))
    report = scan_artifact(artifact)
    assert not report.safe
    assert f"model.skops: {SYSTEM} (dangerous global)" in report.issues


def test_a_skops_file_is_safe(tmp_path: Path) -> None:
    model, _ = tiny_classifier()
    artifact = tmp_path / "model.skops"
    artifact.write_bytes(skops.io.dumps(model))
    assert scan_artifact(artifact).safe


def test_a_truncated_pickle_is_unsafe(tmp_path: Path) -> None:
    model, _ = tiny_classifier()
    data = pickle.dumps(model)
    artifact = tmp_path / "model.pkl"
    artifact.write_bytes(data[: len(data) // 2])
    report = scan_artifact(artifact)
    assert not report.safe


def test_bytes_named_as_a_pickle_that_do_not_parse_are_unsafe(tmp_path: Path) -> None:
    # picklescan itself passes these ("not a pickle", no global seen): the scan fails closed.
    artifact = tmp_path / "model.pkl"
    artifact.write_bytes(b"\x80\x04this is not a pickle stream")
    report = scan_artifact(artifact)
    assert not report.safe
    assert report.issues[0].startswith("model.pkl: not a well-formed pickle")
