"""Model cards and version diffs, drawn from the registry's model and version views."""

from __future__ import annotations

import copy
from typing import Any

from capstan.registry.cards import card_html, card_markdown, diff_text, version_diff
from capstan.registry.profile import profile_of

SECTIONS = (
    "Model card: credit-risk v3",
    "Intended use",
    "Owner and risk tier",
    "Data lineage",
    "Metrics",
    "Signature",
    "Reference data profile",
    "Parameters",
    "Artifact",
    "Approvals and history",
)

SAMPLE: dict[str, Any] = {
    "age": [23, 35, 47, 51, None, 62],
    "income": [31_000.0, 52_500.0, 61_000.0, 75_250.0, 88_000.0, 43_000.0],
    "region": ["north", "south", "south", "east", "north", "south"],
}


def _model(**changes: Any) -> dict[str, Any]:
    model = {
        "id": "7b0c2d8e-4f51-4a7e-9d43-2b1f0a6c9e11",
        "name": "credit-risk",
        "description": "Scores consumer loan applications.",
        "intended_use": "Ranking applications for manual review; never automatic rejection.",
        "owner": "risk-ml@example.com",
        "risk_tier": "high",
        "project_id": "0d9a4c3e-1b2f-4e5a-8c7d-6f5e4d3c2b1a",
        "latest_version": 3,
        "aliases": {"champion": 3, "previous": 2},
        "created_at": "2024-04-02T09:15:00Z",
    }
    return model | changes


def _version(**changes: Any) -> dict[str, Any]:
    version = {
        "name": "credit-risk",
        "version": 3,
        "flavor": "sklearn",
        "status": "production",
        "aliases": ["champion"],
        "artifact_uri": "s3://models/credit-risk/3/model.skops",
        "artifact_sha256": "a" * 64,
        "artifact_size": 2_457_600,
        "signature": {
            "inputs": [{"name": "features", "datatype": "FP64", "shape": [-1, 3]}],
            "outputs": [{"name": "probability", "datatype": "FP64", "shape": [-1, 2]}],
            "columns": ["age", "income", "region"],
        },
        "params": {"max_depth": 6, "n_estimators": 200},
        "metrics": {"auc": 0.91, "log_loss": 0.31},
        "tags": {"team": "risk"},
        "lineage": {
            "train_data_uri": "s3://data/loans/2024-04.parquet",
            "train_data_sha256": "b" * 64,
            "code_commit": "4f2a9c1",
            "parent_version": 2,
        },
        "description": "Retrained on April applications.",
        "created_by": "alice@example.com",
        "created_at": "2024-05-01T12:30:00Z",
        "profile": profile_of(SAMPLE),
    }
    return version | changes


AUDIT = [
    {"time": "2024-05-01T12:30:00Z", "actor": "alice@example.com", "action": "model.register"},
    {"time": "2024-05-02T08:00:00Z", "actor": "bob@example.com", "action": "model.approve"},
    {"time": "2024-05-02T08:05:00Z", "actor": "bob@example.com", "action": "model.alias.set"},
]


# --- cards -----------------------------------------------------------------------------------


def test_markdown_card_has_every_section_in_order() -> None:
    card = card_markdown(_model(), _version(), audit=AUDIT)
    positions = [card.index(section) for section in SECTIONS]
    assert positions == sorted(positions)


def test_html_card_has_every_section_in_order() -> None:
    card = card_html(_model(), _version(), audit=AUDIT)
    positions = [card.index(section) for section in SECTIONS]
    assert positions == sorted(positions)


def test_html_card_is_a_self_contained_page() -> None:
    card = card_html(_model(), _version())
    assert card.startswith("<!doctype html>")
    assert "<style>" in card
    assert "<script" not in card
    assert "http://" not in card
    assert "https://" not in card


def test_card_shows_status_and_aliases() -> None:
    card = card_markdown(_model(), _version(aliases=["champion", "stable"]))
    assert "**Status:** production · **Aliases:** champion, stable" in card


def test_card_without_intended_use_says_not_stated() -> None:
    card = card_markdown(_model(intended_use=None), _version())
    intended = card.split("## Intended use")[1].split("##")[0]
    assert intended.strip() == "Not stated."


def test_html_card_without_intended_use_says_not_stated() -> None:
    card = card_html(_model(intended_use="  "), _version())
    assert '<h2>Intended use</h2>\n<p class="text">Not stated.</p>' in card


def test_card_shows_owner_risk_tier_and_lineage() -> None:
    card = card_markdown(_model(), _version())
    assert "- **Owner:** risk-ml@example.com" in card
    assert "- **Risk tier:** high" in card
    assert "- **Training data:** s3://data/loans/2024-04.parquet" in card
    assert f"- **Training data SHA-256:** {'b' * 64}" in card
    assert "- **Code commit:** 4f2a9c1" in card
    assert "- **Parent version:** v2" in card
    assert "- **Registered by:** alice@example.com" in card
    assert "- **Registered at:** 2024-05-01 12:30:00 UTC" in card


def test_card_names_missing_lineage_rather_than_hiding_it() -> None:
    card = card_markdown(_model(owner=None), _version(lineage={}))
    assert "- **Owner:** Not stated." in card
    assert "- **Code commit:** Not stated." in card
    assert "- **Parent version:** Not stated." in card


def test_card_metrics_table_has_a_row_per_metric() -> None:
    card = card_markdown(_model(), _version())
    assert "| Metric | Value |\n| --- | --- |\n| auc | 0.91 |\n| log_loss | 0.31 |" in card


def test_html_card_metrics_table_has_a_row_per_metric() -> None:
    card = card_html(_model(), _version())
    assert "<tr><td>auc</td><td>0.91</td></tr>" in card
    assert "<tr><td>log_loss</td><td>0.31</td></tr>" in card


def test_card_without_metrics_says_so() -> None:
    assert "No metrics recorded." in card_markdown(_model(), _version(metrics={}))


def test_card_signature_tables_list_inputs_outputs_and_columns() -> None:
    card = card_markdown(_model(), _version())
    assert "| Name | Datatype | Shape |" in card
    assert "| features | FP64 | [-1, 3] |" in card
    assert "| probability | FP64 | [-1, 2] |" in card
    assert "**Feature columns, in order:** age, income, region" in card


def test_html_card_signature_tables_list_inputs_and_outputs() -> None:
    card = card_html(_model(), _version())
    assert "<tr><td>features</td><td>FP64</td><td>[-1, 3]</td></tr>" in card
    assert "<tr><td>probability</td><td>FP64</td><td>[-1, 2]</td></tr>" in card


def test_card_profile_table_summarises_each_column() -> None:
    card = card_markdown(_model(), _version())
    assert "Profiled on 6 training rows." in card
    assert "| age | numeric | 16.7% | mean 43.6, min 23, max 62 |" in card
    assert "| income | numeric | 0.0% | mean 58458.3, min 31000, max 88000 |" in card
    assert "| region | categorical | 0.0% | 3 distinct; top: south, north, east |" in card


def test_card_without_profile_says_no_sample_was_profiled() -> None:
    markdown = card_markdown(_model(), _version(profile=None))
    html = card_html(_model(), _version(profile=None))
    assert "No training sample was profiled." in markdown
    assert "No training sample was profiled." in html


def test_card_lists_parameters_and_artifact() -> None:
    card = card_markdown(_model(), _version())
    assert "| max_depth | 6 |" in card
    assert "- **Flavor:** sklearn" in card
    assert "- **Size:** 2.3 MiB (2,457,600 bytes)" in card
    assert f"- **SHA-256:** {'a' * 64}" in card


def test_card_lists_approvals_and_every_history_entry() -> None:
    card = card_markdown(_model(), _version(), audit=AUDIT)
    assert "- Approved by bob@example.com at 2024-05-02 08:00:00 UTC (model.approve)" in card
    assert "| 2024-05-01 12:30:00 UTC | alice@example.com | model.register |" in card
    assert "| 2024-05-02 08:05:00 UTC | bob@example.com | model.alias.set |" in card
    assert "No approvals recorded." not in card


def test_card_without_approvals_says_none_are_recorded() -> None:
    markdown = card_markdown(_model(), _version(), audit=AUDIT[:1])
    html = card_html(_model(), _version())
    assert "No approvals recorded." in markdown
    assert "No approvals recorded." in html
    assert "No history recorded." in html


def test_html_card_escapes_registry_text() -> None:
    attack = '<script>alert("x")</script>'
    card = card_html(_model(description=attack, owner=attack), _version(params={attack: 1}))
    assert "<script>" not in card
    assert card.count("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") == 3


def test_markdown_card_escapes_pipes_and_newlines_in_table_cells() -> None:
    card = card_markdown(_model(), _version(params={"a|b": "one\ntwo"}))
    assert "| a\\|b | one<br>two |" in card


def test_markdown_card_escapes_html_in_registry_text() -> None:
    card = card_markdown(_model(description="<script>alert(1)</script>"), _version())
    assert "<script>" not in card
    assert "\\<script\\>alert(1)\\</script\\>" in card


def test_markdown_card_cannot_be_given_links() -> None:
    card = card_markdown(_model(description="[click](javascript:alert(1))"), _version())
    assert "[click\\](javascript:alert(1))" in card


def test_markdown_free_text_cannot_start_a_heading() -> None:
    card = card_markdown(_model(intended_use="Scoring.\n# Injected\n- item"), _version())
    assert "Scoring.  \n\\# Injected  \n\\- item" in card
    assert "\n# Injected" not in card


def test_cards_show_control_characters_as_escapes() -> None:
    card = card_markdown(_model(owner="eve\x1b[2J"), _version())
    assert "\x1b" not in card
    assert "eve\\\\x1b[2J" in card


# --- diffs -----------------------------------------------------------------------------------


def _second() -> dict[str, Any]:
    sample = SAMPLE | {"income": [x * 1.1 for x in SAMPLE["income"]]}
    del sample["region"]
    sample["tenure"] = [1, 4, 2, 8, 3, 5]
    return _version(
        version=4,
        metrics={"auc": 0.93, "log_loss": 0.31, "recall": 0.7},
        signature={
            "inputs": [
                {"name": "features", "datatype": "FP32", "shape": [-1, 3]},
                {"name": "segment", "datatype": "BYTES", "shape": [-1]},
            ],
            "outputs": [],
            "columns": ["age", "income", "tenure"],
        },
        params={"max_depth": 8, "n_estimators": 200, "subsample": 0.8},
        lineage={
            "train_data_uri": "s3://data/loans/2024-05.parquet",
            "train_data_sha256": "b" * 64,
            "code_commit": "9e8d7c6",
            "parent_version": 3,
        },
        profile=profile_of(sample),
    )


def test_diff_names_the_versions_compared() -> None:
    diff = version_diff("credit-risk", _version(), _second())
    assert diff["name"] == "credit-risk"
    assert diff["versions"] == [3, 4]


def test_diff_metric_change_is_second_minus_first() -> None:
    metrics = {m["name"]: m for m in version_diff("credit-risk", _version(), _second())["metrics"]}
    assert metrics["auc"]["first"] == 0.91
    assert metrics["auc"]["second"] == 0.93
    assert abs(metrics["auc"]["change"] - 0.02) < 1e-12
    assert metrics["log_loss"]["change"] == 0.0


def test_diff_metric_in_one_version_only_has_no_change() -> None:
    metrics = {m["name"]: m for m in version_diff("credit-risk", _version(), _second())["metrics"]}
    assert metrics["recall"] == {"name": "recall", "first": None, "second": 0.7, "change": None}


def test_diff_signature_lists_added_removed_and_changed_tensors() -> None:
    signature = version_diff("credit-risk", _version(), _second())["signature"]
    assert signature["inputs_added"] == [{"name": "segment", "datatype": "BYTES", "shape": [-1]}]
    assert signature["inputs_removed"] == []
    assert signature["inputs_changed"] == [
        {
            "name": "features",
            "first": {"name": "features", "datatype": "FP64", "shape": [-1, 3]},
            "second": {"name": "features", "datatype": "FP32", "shape": [-1, 3]},
        }
    ]
    assert [s["name"] for s in signature["outputs_removed"]] == ["probability"]
    assert signature["columns_added"] == ["tenure"]
    assert signature["columns_removed"] == ["region"]


def test_diff_signature_notices_reordered_feature_columns() -> None:
    first = _version()
    second = copy.deepcopy(first)
    second["signature"]["columns"] = ["income", "age", "region"]
    signature = version_diff("credit-risk", first, second)["signature"]
    assert signature["columns_reordered"] is True
    assert signature["columns_added"] == signature["columns_removed"] == []


def test_diff_lists_only_lineage_fields_that_differ() -> None:
    lineage = version_diff("credit-risk", _version(), _second())["lineage"]
    assert lineage == [
        {
            "field": "train_data_uri",
            "first": "s3://data/loans/2024-04.parquet",
            "second": "s3://data/loans/2024-05.parquet",
        },
        {"field": "code_commit", "first": "4f2a9c1", "second": "9e8d7c6"},
        {"field": "parent_version", "first": 2, "second": 3},
    ]


def test_diff_lists_only_params_that_differ() -> None:
    params = version_diff("credit-risk", _version(), _second())["params"]
    assert params == [
        {"name": "max_depth", "first": 6, "second": 8},
        {"name": "subsample", "first": None, "second": 0.8},
    ]


def test_diff_param_turning_into_a_bool_is_a_change() -> None:
    params = version_diff(
        "credit-risk", _version(params={"balanced": 1}), _version(params={"balanced": True})
    )["params"]
    assert params == [{"name": "balanced", "first": 1, "second": True}]


def test_diff_profile_shows_mean_shift() -> None:
    profile = {
        c["column"]: c for c in version_diff("credit-risk", _version(), _second())["profile"]
    }
    income = profile["income"]
    assert abs(income["mean_change"] - income["first_mean"] * 0.1) < 1e-6
    assert income["second_mean"] > income["first_mean"]
    assert profile["age"]["mean_change"] == 0.0
    assert profile["age"]["first_missing"] == profile["age"]["second_missing"] == 1 / 6
    assert income["note"] is None


def test_diff_profile_notes_columns_in_one_version_only() -> None:
    profile = {
        c["column"]: c for c in version_diff("credit-risk", _version(), _second())["profile"]
    }
    assert profile["region"]["note"] == "only in v3"
    assert profile["region"]["second_mean"] is None
    assert profile["tenure"]["note"] == "only in v4"


def test_diff_without_both_profiles_compares_no_columns() -> None:
    diff = version_diff("credit-risk", _version(profile=None), _second())
    assert diff["profiled"] == [False, True]
    assert diff["profile"] == []


def test_diff_text_says_which_version_was_not_profiled() -> None:
    text = diff_text(version_diff("credit-risk", _version(profile=None), _second()))
    assert "not profiled: v3" in text


def test_identical_versions_differ_in_nothing() -> None:
    diff = version_diff("credit-risk", _version(), _version())
    assert diff["lineage"] == []
    assert diff["params"] == []
    assert all(not changes for changes in diff["signature"].values())
    assert [m["change"] for m in diff["metrics"]] == [0.0, 0.0]
    assert {c["mean_change"] for c in diff["profile"]} <= {0.0, None}
    assert {c["note"] for c in diff["profile"]} == {None}


def test_diff_text_shows_metric_names_and_both_values() -> None:
    text = diff_text(version_diff("credit-risk", _version(), _second()))
    auc = next(line for line in text.splitlines() if line.strip().startswith("auc"))
    assert auc.split() == ["auc", "0.91", "0.93", "+0.02"]
    assert "credit-risk: v3 -> v4" in text
    assert "recall" in text
    assert "0.7" in text


def test_diff_text_aligns_columns() -> None:
    text = diff_text(version_diff("credit-risk", _version(), _second()))
    lines = text.split("Metrics\n")[1].split("\n\n")[0].splitlines()
    starts = {line.index(line.split()[1]) for line in lines}
    assert len(starts) == 1


def test_diff_text_says_when_nothing_changed() -> None:
    text = diff_text(version_diff("credit-risk", _version(), _version()))
    assert text.count("no changes") == 3


def test_diff_text_shows_control_characters_as_escapes() -> None:
    first, second = _version(params={"note": "a"}), _version(params={"note": "b\x1b[2J\nc"})
    text = diff_text(version_diff("credit-risk", first, second))
    assert "\x1b" not in text
    assert "b\\x1b[2J\\nc" in text
