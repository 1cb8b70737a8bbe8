"""`capstan apply`: a YAML file made true in one transaction, idempotent, strict about keys and
references, with a readable plan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from capstan.bootstrap import system_principal
from capstan.errors import Forbidden, InvalidInput
from capstan.gateway.config.apply import ApplyResult, apply_document
from capstan.identity.principal import Principal
from capstan.identity.roles import Role
from tests.conftest import Capstan
from tests.test_cli import Cli

ISSUE_EXAMPLE = """\
providers:
  - name: openai-main
    kind: openai
    base_url: https://api.openai.com/v1
    api_key: env:OPENAI_API_KEY
deployments:
  - name: gpt-4o-mini@openai-main
    provider: openai-main
    model: gpt-4o-mini
    timeout_s: 60
    max_concurrency: 100
aliases:
  - name: chat-default
    strategy: weighted
    targets:
      - {deployment: gpt-4o-mini@openai-main, weight: 3}
      - {deployment: claude-haiku@anthropic-main, weight: 1}
    fallbacks: [chat-backup]
"""

# The example plus what it refers to: an Anthropic provider (literal key), its deployment and
# the backup alias.
COMPLETE = """\
settings:
  log_level: debug
providers:
  - name: openai-main
    kind: openai
    base_url: https://api.openai.com/v1
    api_key: env:OPENAI_API_KEY
  - name: anthropic-main
    kind: anthropic
    api_key: sk-ant-literal-key-for-tests
deployments:
  - name: gpt-4o-mini@openai-main
    provider: openai-main
    model: gpt-4o-mini
    timeout_s: 60
    max_concurrency: 100
  - name: claude-haiku@anthropic-main
    provider: anthropic-main
    model: claude-haiku-4-5
aliases:
  - name: chat-default
    strategy: weighted
    targets:
      - {deployment: gpt-4o-mini@openai-main, weight: 3}
      - {deployment: claude-haiku@anthropic-main, weight: 1}
    fallbacks: [chat-backup]
  - name: chat-backup
    strategy: priority
    targets:
      - {deployment: claude-haiku@anthropic-main}
"""


def admin_of(capstan: Capstan) -> Principal:
    return system_principal(capstan.services.directory.organization())


def apply(capstan: Capstan, text: str, **flags: bool) -> ApplyResult:
    return apply_document(capstan.services.gateway, admin_of(capstan), text, **flags)


def audit_count(capstan: Capstan) -> int:
    return len(capstan.services.audit.query(limit=100_000))


def names(capstan: Capstan) -> dict[str, list[str]]:
    gateway, who = capstan.services.gateway, admin_of(capstan)
    return {
        kind: [r.name for r in gateway.list(who, kind, None, 500)]
        for kind in ("provider", "deployment", "alias")
    }


def invalid(capstan: Capstan, text: str, **flags: bool) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        apply(capstan, text, **flags)
    return caught.value


def test_the_example_file_creates_everything(capstan: Capstan) -> None:
    result = apply(capstan, COMPLETE)

    assert result.applied is True
    assert [(c.action, c.kind, c.name) for c in result.changes] == [
        ("create", "provider", "openai-main"),
        ("create", "provider", "anthropic-main"),
        ("create", "deployment", "gpt-4o-mini@openai-main"),
        ("create", "deployment", "claude-haiku@anthropic-main"),
        ("create", "alias", "chat-default"),
        ("create", "alias", "chat-backup"),
    ]
    assert names(capstan) == {
        "provider": ["openai-main", "anthropic-main"],
        "deployment": ["gpt-4o-mini@openai-main", "claude-haiku@anthropic-main"],
        "alias": ["chat-default", "chat-backup"],
    }


def test_applying_the_same_file_twice_changes_nothing_the_second_time(capstan: Capstan) -> None:
    apply(capstan, COMPLETE)
    entries, version = audit_count(capstan), capstan.services.versions.current()

    again = apply(capstan, COMPLETE)

    assert again.changes == ()
    assert again.unchanged == 6
    assert again.applied is False
    assert audit_count(capstan) == entries
    assert capstan.services.versions.current() == version


def test_each_resource_change_writes_one_audit_entry_in_one_version_bump(
    capstan: Capstan,
) -> None:
    entries, version = audit_count(capstan), capstan.services.versions.current()

    apply(capstan, COMPLETE)

    # six resources, plus the vault's entry for the stored Anthropic key
    assert audit_count(capstan) == entries + 7
    assert capstan.services.versions.current() == version + 1


def test_a_dry_run_plans_but_changes_nothing(capstan: Capstan) -> None:
    entries = audit_count(capstan)

    result = apply(capstan, COMPLETE, dry_run=True)

    assert len(result.changes) == 6
    assert result.applied is False
    assert names(capstan) == {"provider": [], "deployment": [], "alias": []}
    assert audit_count(capstan) == entries


def test_an_update_is_planned_as_a_field_diff(capstan: Capstan) -> None:
    apply(capstan, COMPLETE)
    changed = COMPLETE.replace("strategy: weighted", "strategy: priority")

    [change] = apply(capstan, changed).changes

    assert change.as_dict() == {
        "action": "update",
        "kind": "alias",
        "name": "chat-default",
        "diff": [{"field": "strategy", "before": "weighted", "after": "priority"}],
    }


def test_a_literal_key_is_compared_by_its_digest(capstan: Capstan) -> None:
    apply(capstan, COMPLETE)
    rotated = COMPLETE.replace("sk-ant-literal-key-for-tests", "sk-ant-rotated-key")

    [change] = apply(capstan, rotated).changes

    assert [(d.field, d.before, d.after) for d in change.diff()] == [
        ("api_key", "stored", "stored (new key)")
    ]
    org = capstan.services.directory.organization().id
    key = capstan.services.vault.reveal("provider-anthropic-main-api-key", org)
    assert key == "sk-ant-rotated-key"


def test_without_prune_omitted_resources_are_left_alone(capstan: Capstan) -> None:
    apply(capstan, COMPLETE)
    only_openai = COMPLETE.split("  - name: anthropic-main")[0]

    result = apply(capstan, only_openai)

    assert result.changes == ()
    assert len(names(capstan)["alias"]) == 2


def test_prune_deletes_what_the_file_omits(capstan: Capstan) -> None:
    apply(capstan, COMPLETE)
    only_openai = COMPLETE.split("  - name: anthropic-main")[0]

    result = apply(capstan, only_openai, prune=True)

    assert [(c.action, c.kind, c.name) for c in result.changes] == [
        ("delete", "provider", "anthropic-main"),
        ("delete", "deployment", "claude-haiku@anthropic-main"),
        ("delete", "deployment", "gpt-4o-mini@openai-main"),
        ("delete", "alias", "chat-backup"),
        ("delete", "alias", "chat-default"),
    ]
    assert names(capstan) == {"provider": ["openai-main"], "deployment": [], "alias": []}
    assert capstan.services.vault.list(admin_of(capstan)) == []  # its stored key went too


def test_the_example_as_given_is_rejected_naming_the_dangling_target(capstan: Capstan) -> None:
    error = invalid(capstan, ISSUE_EXAMPLE)

    assert error.field == "aliases[0].targets[1].deployment"
    assert "claude-haiku@anthropic-main" in error.detail
    assert [e["field"] for e in error.extra["errors"]] == [
        "aliases[0].targets[1].deployment",
        "aliases[0].fallbacks[0]",
    ]
    assert names(capstan)["provider"] == []  # nothing of the file was written


def test_a_reference_to_what_the_store_holds_resolves(capstan: Capstan) -> None:
    apply(capstan, COMPLETE)
    extra = """\
aliases:
  - name: fast
    targets: [{deployment: claude-haiku@anthropic-main}]
"""
    [change] = apply(capstan, extra).changes

    assert (change.action, change.name) == ("create", "fast")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("provider: []\n", "provider"),
        (
            "deployments:\n  - {name: a, provider: p, model: m}\n"
            "  - {name: b, provider: p, model: m, timeout: 3}\n",
            "deployments[1].timeout",
        ),
        (
            "aliases:\n  - {name: a, targets: [{deployment: d, wieght: 2}]}\n",
            "aliases[0].targets[0].wieght",
        ),
        (
            "providers:\n  - {name: p, kind: openai, options: {x: 1}, extra: 1}\n",
            "providers[0].extra",
        ),
    ],
)
def test_unknown_keys_are_rejected_with_their_path(capstan: Capstan, text: str, field: str) -> None:
    error = invalid(capstan, text)

    assert error.field == field
    assert error.detail == f"{field}: unknown key"


def test_a_deployment_naming_an_unknown_provider_is_rejected(capstan: Capstan) -> None:
    text = "deployments:\n  - {name: d, provider: ghost, model: m}\n"

    assert invalid(capstan, text).field == "deployments[0].provider"


def test_pruning_a_provider_a_kept_deployment_uses_is_rejected(capstan: Capstan) -> None:
    apply(capstan, COMPLETE)
    text = "deployments:\n  - {name: claude-haiku@anthropic-main, provider: anthropic-main,"
    text += " model: claude-haiku-4-5}\n"

    assert invalid(capstan, text, prune=True).field == "deployments[0].provider"


def test_a_name_defined_twice_is_rejected(capstan: Capstan) -> None:
    text = "providers:\n  - {name: p, kind: ollama}\n  - {name: p, kind: vllm}\n"

    assert invalid(capstan, text).field == "providers[1].name"


def test_invalid_yaml_names_the_line(capstan: Capstan) -> None:
    error = invalid(capstan, "providers:\n  - name: [unclosed\n")

    assert error.field == "document"
    assert "line 3" in error.detail


def test_a_role_without_write_access_may_only_dry_run(capstan: Capstan) -> None:
    analyst = Principal("analyst", Role.ANALYST, admin_of(capstan).scope)
    config = capstan.services.gateway

    assert len(apply_document(config, analyst, COMPLETE, dry_run=True).changes) == 6
    with pytest.raises(Forbidden):
        apply_document(config, analyst, COMPLETE)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(capsys, monkeypatch)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_cli_prints_the_plan_and_applies_in_process(
    cli: Cli, capstan: Capstan, tmp_path: Path
) -> None:
    cli.local(capstan)
    path = tmp_path / "capstan.yaml"
    path.write_text(COMPLETE)

    code, dry, _ = cli("apply", "-f", str(path), "--dry-run")
    assert code == 0
    assert dry.splitlines()[0] == "+ provider openai-main"
    assert names(capstan)["provider"] == []

    code, out, _ = cli("apply", "-f", str(path))
    assert code == 0
    assert out.splitlines()[-1] == "applied 6 change(s)"

    path.write_text(COMPLETE.replace("strategy: weighted", "strategy: priority"))
    code, out, _ = cli("apply", "-f", str(path))
    assert out.splitlines() == [
        "~ alias chat-default: strategy weighted → priority",
        "= 5 unchanged",
        "applied 1 change(s)",
    ]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_cli_reports_a_bad_file_in_one_line(cli: Cli, capstan: Capstan, tmp_path: Path) -> None:
    cli.local(capstan)
    path = tmp_path / "bad.yaml"
    path.write_text(ISSUE_EXAMPLE)

    code, _, err = cli("apply", "-f", str(path))

    assert code == 1
    assert err.strip().splitlines() == [
        "error: aliases[0].targets[1].deployment: no deployment named "
        "'claude-haiku@anthropic-main' (HTTP 422)"
    ]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_cli_json_output_is_the_api_result(cli: Cli, capstan: Capstan, tmp_path: Path) -> None:
    cli.local(capstan)
    path = tmp_path / "capstan.yaml"
    path.write_text(COMPLETE)

    result: dict[str, Any] = cli.json("apply", "-f", str(path), "--dry-run")

    assert json.loads(json.dumps(result))["unchanged"] == 0
    assert {c["action"] for c in result["changes"]} == {"create"}
