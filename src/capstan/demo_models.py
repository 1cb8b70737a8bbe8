"""The demo's in-house model: a credit-risk classifier trained, at demo time, on synthetic loan
applications, registered as ONNX and served at `/v2/models/credit-risk/infer`.

The data is generated rather than shipped so that the demo needs no download and its
generating process is known exactly: bias and explanation work can then be checked against
the truth instead of against a public data set's unknown history. The applicants belong to
one of two groups that the model never sees but that shape its inputs, which is how real
models come to treat groups differently without being given the attribute.

numpy and scikit-learn load only when the demo seeds, never with the CLI (`demo.py` imports
this module inside `seed`).
"""

from __future__ import annotations

import csv
import hashlib
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from capstan.errors import NotFound
from capstan.identity.principal import Principal
from capstan.registry.profile import profile_of
from capstan.registry.service import VersionRequest
from capstan.services import Services

Column = NDArray[Any]
Applications = dict[str, Column]

FEATURES = (
    "income",
    "debt_to_income",
    "credit_history_years",
    "loan_amount",
    "late_payments_2y",
    "employment_years",
)
PROTECTED = "group"
LABEL = "default"

MODEL_NAME = "credit-risk"
ROWS = 5000
SEED = 7
TEST_SIZE = 0.2
SPLIT_SEED = 0
THRESHOLD = 0.5  # a predicted default probability at or above it declines the application
SAMPLE_FILE = Path("demo") / "loan_applications.csv"

# Group B is the smaller group, with lower incomes and shorter credit histories.
_SHARE_B = 0.35
_MEDIAN_INCOME = {"A": 64_000.0, "B": 42_000.0}
_HISTORY_SHAPE = {"A": 4.0, "B": 2.5}


def loan_applications(rows: int = ROWS, seed: int = SEED) -> Applications:
    """Synthetic loan applications, the same for the same `rows` and `seed`.

    The generating process (numpy's PCG64 seeded with `seed`, draws in this order), so that a
    model card can state exactly what the model learnt from:

    - `group`: "B" with probability 0.35, else "A". A protected attribute (think of a
      neighbourhood or an ethnicity): never a feature, and never in the label's formula.
    - `employment_years`: Gamma(shape 2, scale 4), clipped to [0, 45], one decimal; the same
      for both groups.
    - `credit_history_years`: Gamma(shape 4 for A, 2.5 for B; scale 2.6), clipped to [0, 40],
      one decimal: about 10.4 years on average in A, 6.5 in B.
    - `income` (annual USD): lognormal, log-sd 0.45, with median 64,000 in A and 42,000 in B
      before 1.2 % more per year employed (about 70,000 and 46,000 overall); rounded to 100
      and clipped to [12,000, 1,000,000].
    - `debt_to_income`: 0.9 x Beta(2.2, 6), clipped to [0, 0.8], three decimals (mean 0.24).
    - `loan_amount` (USD): income x a lognormal with median 0.35 and log-sd 0.5, rounded to
      100 and clipped to [1,000, 500,000].
    - `late_payments_2y`: Poisson with mean exp(-1.2 + 2 x debt_to_income - 0.04 x history),
      about 0.36 on average.
    - `default` (1 when the applicant defaults): Bernoulli(sigmoid(z)) with
      z = -1.75 + 4.5 (dti - 0.25) + 0.6 late + ln(loan / income / 0.35)
      - 1.3 ln(income / 60,000) - 0.08 (history - 8) - 0.04 (employment - 8) + N(0, 0.4²),
      computed on the rounded values the model sees. About 21 % default.

    Because group B has lower incomes and shorter histories, its default rate is higher (about
    29 % against 16 %) and a model fed only the six features still approves it less often:
    the disparity bias monitoring is there to catch, with the attribute kept out of the model.

    Returns one array per column: the six FEATURES (float64, except the int64 late payments),
    `group` (one-letter text) and `default` (int64).
    """
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    rng = np.random.default_rng(seed)
    in_b = rng.random(rows) < _SHARE_B
    group = np.where(in_b, "B", "A")
    employment = np.round(np.clip(rng.gamma(2.0, 4.0, rows), 0.0, 45.0), 1)
    history_shape = np.where(in_b, _HISTORY_SHAPE["B"], _HISTORY_SHAPE["A"])
    history = np.round(np.clip(rng.gamma(history_shape, 2.6), 0.0, 40.0), 1)
    median_income = np.where(in_b, _MEDIAN_INCOME["B"], _MEDIAN_INCOME["A"])
    log_income = rng.normal(np.log(median_income) + 0.012 * employment, 0.45)
    income = np.clip(np.round(np.exp(log_income), -2), 12_000.0, 1_000_000.0)
    debt_to_income = np.round(np.clip(rng.beta(2.2, 6.0, rows) * 0.9, 0.0, 0.8), 3)
    loan_share = np.exp(rng.normal(np.log(0.35), 0.5, rows))
    loan = np.clip(np.round(income * loan_share, -2), 1_000.0, 500_000.0)
    late = rng.poisson(np.exp(-1.2 + 2.0 * debt_to_income - 0.04 * history)).astype(np.int64)
    z = (
        -1.75
        + 4.5 * (debt_to_income - 0.25)
        + 0.6 * late
        + np.log(loan / income / 0.35)
        - 1.3 * np.log(income / 60_000.0)
        - 0.08 * (history - 8.0)
        - 0.04 * (employment - 8.0)
        + rng.normal(0.0, 0.4, rows)
    )
    default = (rng.random(rows) < 1.0 / (1.0 + np.exp(-z))).astype(np.int64)
    return {
        "income": income,
        "debt_to_income": debt_to_income,
        "credit_history_years": history,
        "loan_amount": loan,
        "late_payments_2y": late,
        "employment_years": employment,
        PROTECTED: group,
        LABEL: default,
    }


def feature_matrix(data: Mapping[str, Column]) -> NDArray[np.float64]:
    """The FEATURES as one C-ordered float64 matrix: the bytes the lineage hash is taken of,
    so anyone can regenerate the sample and check it is the one the model was trained on."""
    return np.ascontiguousarray(
        np.column_stack([np.asarray(data[name], dtype=np.float64) for name in FEATURES])
    )


def split_applications(data: Mapping[str, Column]) -> tuple[Applications, Applications]:
    """The training part (80 %) and the held-out part (20 %), stratified by the label so both
    parts default at the same rate, and the same for the same data."""
    from sklearn.model_selection import train_test_split  # type: ignore[import-untyped]

    rows = np.arange(len(data[LABEL]))
    train, test = train_test_split(
        rows, test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=data[LABEL]
    )
    return (
        {name: np.asarray(values)[train] for name, values in data.items()},
        {name: np.asarray(values)[test] for name, values in data.items()},
    )


def fit_credit_risk(train: Mapping[str, Column]) -> Any:
    """A StandardScaler + LogisticRegression pipeline: simple enough that its coefficients
    explain it, and converted to ONNX exactly."""
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
    from sklearn.pipeline import Pipeline  # type: ignore[import-untyped]
    from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]

    pipeline = Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression())])
    return pipeline.fit(feature_matrix(train), np.asarray(train[LABEL]))


def credit_risk_onnx(pipeline: Any) -> bytes:
    """The pipeline as ONNX with one float32 input, `input` [None, 6] in FEATURES order (the
    tabular convention the records form maps names onto), and the probabilities as one
    tensor rather than skl2onnx's list of dicts (ZipMap), which the protocol cannot carry."""
    from skl2onnx import convert_sklearn  # type: ignore[import-untyped]
    from skl2onnx.common.data_types import FloatTensorType  # type: ignore[import-untyped]

    classifier = pipeline.steps[-1][1]
    proto = convert_sklearn(
        pipeline,
        name=MODEL_NAME,
        initial_types=[("input", FloatTensorType([None, len(FEATURES)]))],
        options={id(classifier): {"zipmap": False}},
    )
    return bytes(proto.SerializeToString())


def train_credit_risk(data: Mapping[str, Column]) -> tuple[bytes, dict[str, float]]:
    """The ONNX model and its metrics on the held-out part.

    The metrics are measured on the ONNX model itself, run by onnxruntime as the server runs
    it, so they describe the artifact that is registered, not the pipeline it came from.
    `approval_rate_gap` is group A's approval rate minus group B's (approval: a predicted
    default probability under 0.5), positive when A is approved more often.
    """
    from sklearn.metrics import roc_auc_score  # type: ignore[import-untyped]

    train, test = split_applications(data)
    model = credit_risk_onnx(fit_credit_risk(train))
    probability = default_probability(model, feature_matrix(test))
    actual = np.asarray(test[LABEL])
    declined = probability >= THRESHOLD
    group = np.asarray(test[PROTECTED])
    approved_a = float(np.mean(~declined[group == "A"]))
    approved_b = float(np.mean(~declined[group == "B"]))
    return model, {
        "auc": float(roc_auc_score(actual, probability)),
        "accuracy": float(np.mean(declined == (actual == 1))),
        "approval_rate_gap": approved_a - approved_b,
    }


def default_probability(model: bytes, features: NDArray[Any]) -> NDArray[np.float32]:
    """Each row's probability of default as the served ONNX model gives it (the pipeline's
    float64 numbers differ in the last digits), so metrics describe what is registered."""
    (probabilities,) = _session(model).run(
        ["probabilities"], {"input": features.astype(np.float32)}
    )
    return np.asarray(probabilities)[:, 1]


def register_credit_risk(services: Services, admin: Principal, home: Path) -> None:
    """Register `credit-risk` v1 as champion and write its sample to `home/demo`, unless they
    are there already: a second demo run in the same home changes nothing.

    The reference profile covers the six features only. It is what drift monitoring compares
    production inputs with, and requests never carry the group, so a group column there
    would only ever look missing. The group stays in the sample file, with the label, for
    bias monitoring, which joins it to predictions by applicant rather than reading requests.
    """
    sample = home / SAMPLE_FILE
    registered = _is_registered(services, admin)
    if registered and sample.exists():
        return
    data = loan_applications(ROWS, SEED)
    if not sample.exists():
        write_sample(data, sample)
    if registered:
        return
    model, metrics = train_credit_risk(data)
    request = VersionRequest(
        name=MODEL_NAME,
        flavor="onnx",
        signature=_signature(model),
        params={
            "pipeline": "StandardScaler -> LogisticRegression(C=1.0, lbfgs)",
            "test_size": TEST_SIZE,
            "split": f"stratified by {LABEL}, random_state={SPLIT_SEED}",
            "threshold": THRESHOLD,
        },
        metrics=metrics,
        tags={"data": "synthetic", "demo": "true"},
        lineage={
            "train_data_uri": f"synthetic:loan_applications(rows={ROWS}, seed={SEED})",
            "train_data_sha256": hashlib.sha256(feature_matrix(data).tobytes()).hexdigest(),
            "features": list(FEATURES),
            "label": LABEL,
            "protected_attributes": [PROTECTED],
            "sample": str(SAMPLE_FILE),
        },
        profile=profile_of({name: data[name] for name in FEATURES}),
        description=(
            "Probability that a loan applicant defaults, from six application features; "
            f"approve below {THRESHOLD}. Logistic regression on synthetic applications."
        ),
        aliases=("champion",),
        owner="credit-risk team",
        risk_tier="high",
        intended_use=(
            "Illustrative only: a demo of Capstan's registry, serving and monitoring, trained "
            "on synthetic data. Never use it to decide on real applicants."
        ),
    )
    with tempfile.TemporaryDirectory() as folder:
        artifact = Path(folder) / "model.onnx"
        artifact.write_bytes(model)
        services.registry.register(admin, request, artifact)


def write_sample(data: Mapping[str, Column], path: Path) -> None:
    """The whole sample (features, group, label) as CSV, written whole or not at all, so later
    work (bias, drift, explanations) reads exactly the rows the model came from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = [*FEATURES, PROTECTED, LABEL]
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        writer.writerows(zip(*(np.asarray(data[name]).tolist() for name in columns), strict=True))
    partial.replace(path)


def _signature(model: bytes) -> dict[str, Any]:
    """The ONNX model's own signature plus the feature names: ONNX knows its input only as
    `input` [-1, 6], and the names are what lets clients send records."""
    from capstan.registry.inference import onnx_signature
    from capstan.registry.signature import Signature

    own = onnx_signature(_session(model))
    return Signature(own.inputs, own.outputs, FEATURES).as_json()


def _session(model: bytes) -> Any:
    import onnxruntime as ort  # type: ignore[import-untyped]

    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def _is_registered(services: Services, admin: Principal) -> bool:
    try:
        services.registry.model(admin, MODEL_NAME)
    except NotFound:
        return False
    return True
