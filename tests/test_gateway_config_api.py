"""Providers, deployments and aliases over /api/v1: CRUD, write-only keys, references, roles,
audit entries and the config version."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.apiclient import bearer, make_key
from tests.conftest import Capstan
from tests.test_cli import Cli

PROBLEM = "application/problem+json"
LITERAL_KEY = "sk-live-0123456789abcdef-literal"


def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def problem_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    return body


def make_config(client: httpx.Client) -> None:
    """openai-main (env key) → gpt-4o-mini@openai-main ← alias chat."""
    created(
        client.post(
            "/api/v1/providers",
            json={"name": "openai-main", "kind": "openai", "api_key": "env:OPENAI_API_KEY"},
        )
    )
    created(
        client.post(
            "/api/v1/deployments",
            json={"name": "gpt-4o-mini@openai-main", "provider": "openai-main", "model": "m"},
        )
    )
    created(
        client.post(
            "/api/v1/aliases",
            json={"name": "chat", "targets": [{"deployment": "gpt-4o-mini@openai-main"}]},
        )
    )


def test_a_provider_is_created_listed_shown_replaced_and_deleted(admin: httpx.Client) -> None:
    body = {"name": "groq-main", "kind": "groq", "api_key": "env:GROQ_API_KEY"}
    provider = created(admin.post("/api/v1/providers", json=body))
    assert provider["effective_base_url"] == "https://api.groq.com/openai/v1"
    assert provider["base_url"] is None
    assert [p["name"] for p in admin.get("/api/v1/providers").json()["items"]] == ["groq-main"]
    assert admin.get("/api/v1/providers/groq-main").json()["api_key"] == "env:GROQ_API_KEY"

    replaced = admin.put(
        "/api/v1/providers/groq-main",
        json={**body, "base_url": "https://proxy.example.com/v1/", "options": {"tier": 2}},
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["effective_base_url"] == "https://proxy.example.com/v1"
    assert replaced.json()["options"] == {"tier": "2"}

    assert admin.delete("/api/v1/providers/groq-main").status_code == 204
    problem_of(admin.get("/api/v1/providers/groq-main"), 404)


def test_a_deployment_is_created_listed_shown_replaced_and_deleted(admin: httpx.Client) -> None:
    make_config(admin)
    body = {"name": "big@openai-main", "provider": "openai-main", "model": "gpt-4o"}
    deployment = created(admin.post("/api/v1/deployments", json=body))
    assert deployment["timeout_s"] == 60.0
    assert deployment["max_concurrency"] is None
    names = {d["name"] for d in admin.get("/api/v1/deployments").json()["items"]}
    assert names == {"gpt-4o-mini@openai-main", "big@openai-main"}

    replaced = admin.put(
        "/api/v1/deployments/big@openai-main",
        json={**body, "timeout_s": 30, "max_concurrency": 8},
    ).json()
    assert (replaced["timeout_s"], replaced["max_concurrency"]) == (30.0, 8)
    assert admin.get("/api/v1/deployments/big@openai-main").json()["provider"] == "openai-main"

    assert admin.delete("/api/v1/deployments/big@openai-main").status_code == 204
    problem_of(admin.get("/api/v1/deployments/big@openai-main"), 404)


def test_an_alias_is_created_listed_shown_replaced_and_deleted(admin: httpx.Client) -> None:
    make_config(admin)
    body = {
        "name": "chat-backup",
        "strategy": "priority",
        "targets": [{"deployment": "gpt-4o-mini@openai-main", "priority": 1}],
    }
    alias = created(admin.post("/api/v1/aliases", json=body))
    assert alias["targets"] == [
        {"deployment": "gpt-4o-mini@openai-main", "weight": 1, "priority": 1}
    ]
    assert {a["name"] for a in admin.get("/api/v1/aliases").json()["items"]} == {
        "chat",
        "chat-backup",
    }

    replaced = admin.put("/api/v1/aliases/chat", json={
        "name": "chat", "targets": [{"deployment": "gpt-4o-mini@openai-main", "weight": 2}],
        "fallbacks": ["chat-backup"],
    })  # fmt: skip
    assert replaced.json()["fallbacks"] == ["chat-backup"]

    problem_of(admin.delete("/api/v1/aliases/chat-backup"), 409)  # chat falls back to it
    assert admin.delete("/api/v1/aliases/chat").status_code == 204
    assert admin.delete("/api/v1/aliases/chat-backup").status_code == 204
    assert admin.get("/api/v1/aliases").json()["items"] == []


def test_lists_are_paginated_with_a_cursor(admin: httpx.Client) -> None:
    for index in range(3):
        created(admin.post("/api/v1/providers", json={"name": f"p{index}", "kind": "ollama"}))
    first = admin.get("/api/v1/providers", params={"limit": 2}).json()
    second = admin.get(
        "/api/v1/providers", params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert [p["name"] for p in first["items"] + second["items"]] == ["p0", "p1", "p2"]
    assert second["next_cursor"] is None


def test_names_with_slashes_and_colons_are_addressable(admin: httpx.Client) -> None:
    created(admin.post("/api/v1/providers", json={"name": "local", "kind": "vllm"}))
    name = "meta-llama/Llama-3.3-70B:fp8@local"
    body = {"name": name, "provider": "local", "model": "meta-llama/Llama-3.3-70B"}
    created(admin.post("/api/v1/deployments", json=body))
    assert admin.get(f"/api/v1/deployments/{name}").json()["name"] == name
    assert (
        admin.delete("/api/v1/deployments/meta-llama%2FLlama-3.3-70B:fp8@local").status_code == 204
    )


def test_a_literal_api_key_is_never_returned_and_is_stored_encrypted(
    admin: httpx.Client, capstan: Capstan
) -> None:
    body = {"name": "anthropic-main", "kind": "anthropic", "api_key": LITERAL_KEY}
    responses = [
        admin.post("/api/v1/providers", json=body),
        admin.get("/api/v1/providers/anthropic-main"),
        admin.get("/api/v1/providers"),
        admin.get("/api/v1/secrets"),
        admin.get("/api/v1/audit", params={"limit": 1000}),
    ]
    assert responses[0].json()["api_key"] == "stored"
    assert all(LITERAL_KEY not in r.text for r in responses)
    with capstan.services.store.read() as session:
        rows = [
            *session.execute(text("SELECT * FROM providers")).all(),
            *session.execute(text("SELECT * FROM secrets")).all(),
        ]
    stored = repr(rows).encode() + b"".join(
        v for row in rows for v in row if isinstance(v, bytes | memoryview)
    )
    assert LITERAL_KEY.encode() not in stored
    assert capstan.services.vault.reveal("provider-anthropic-main-api-key", _org(capstan)) == (
        LITERAL_KEY
    )


def test_replacing_a_literal_key_with_an_env_reference_deletes_the_stored_one(
    admin: httpx.Client, capstan: Capstan
) -> None:
    body = {"name": "anthropic-main", "kind": "anthropic", "api_key": LITERAL_KEY}
    created(admin.post("/api/v1/providers", json=body))
    admin.put("/api/v1/providers/anthropic-main", json={**body, "api_key": "env:ANTHROPIC_KEY"})
    assert admin.get("/api/v1/secrets").json()["items"] == []


def test_deleting_a_used_provider_is_a_409_naming_the_dependents(admin: httpx.Client) -> None:
    make_config(admin)
    body = problem_of(admin.delete("/api/v1/providers/openai-main"), 409)
    assert body["dependents"] == ["deployment gpt-4o-mini@openai-main"]
    assert "gpt-4o-mini@openai-main" in body["detail"]


def test_deleting_a_deployment_an_alias_targets_is_a_409(admin: httpx.Client) -> None:
    make_config(admin)
    body = problem_of(admin.delete("/api/v1/deployments/gpt-4o-mini@openai-main"), 409)
    assert body["dependents"] == ["alias chat"]


@pytest.mark.parametrize(
    ("alias", "field"),
    [
        ({"targets": [{"deployment": "gpt-4o-mini@openai-main"}, {"deployment": "nope"}]},
         "targets[1].deployment"),
        ({"targets": [{"deployment": "gpt-4o-mini@openai-main"}], "fallbacks": ["nowhere"]},
         "fallbacks[0]"),
        ({"targets": [{"deployment": "chat"}]}, "targets[0].deployment"),
    ],
)  # fmt: skip
def test_a_dangling_reference_is_a_422_naming_the_path(
    admin: httpx.Client, alias: dict[str, Any], field: str
) -> None:
    make_config(admin)
    body = problem_of(admin.post("/api/v1/aliases", json={"name": "a2", **alias}), 422)
    assert body["field"] == field
    assert str(body["detail"]).startswith(field)


def test_a_deployment_on_an_unknown_provider_is_a_422(admin: httpx.Client) -> None:
    body = {"name": "d", "provider": "ghost", "model": "m"}
    assert problem_of(admin.post("/api/v1/deployments", json=body), 422)["field"] == "provider"


def test_a_fallback_cycle_is_a_422(admin: httpx.Client) -> None:
    make_config(admin)
    target = [{"deployment": "gpt-4o-mini@openai-main"}]
    created(
        admin.post("/api/v1/aliases", json={"name": "b", "targets": target, "fallbacks": ["chat"]})
    )
    response = admin.put(
        "/api/v1/aliases/chat", json={"name": "chat", "targets": target, "fallbacks": ["b"]}
    )
    body = problem_of(response, 422)
    assert body["field"] == "fallbacks[0]"
    assert "chat → b → chat" in body["detail"]


def test_an_alias_cannot_take_a_deployments_name(admin: httpx.Client) -> None:
    make_config(admin)
    body = {
        "name": "gpt-4o-mini@openai-main",
        "targets": [{"deployment": "gpt-4o-mini@openai-main"}],
    }
    assert problem_of(admin.post("/api/v1/aliases", json=body), 409)["field"] == "name"


def test_a_duplicate_name_is_a_409(admin: httpx.Client) -> None:
    body = {"name": "local", "kind": "ollama"}
    created(admin.post("/api/v1/providers", json=body))
    assert problem_of(admin.post("/api/v1/providers", json=body), 409)["field"] == "name"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "az", "kind": "azure"}, "base_url"),
        ({"name": "b", "kind": "bedrock"}, "base_url"),
        ({"name": "x", "kind": "openai", "colour": "red"}, "body.colour"),
        ({"name": "x", "kind": "not-a-vendor"}, "body.kind"),
        ({"name": "bad name", "kind": "openai"}, "body.name"),
        ({"name": "x", "kind": "openai", "base_url": "ftp://x"}, "body.base_url"),
        ({"name": "x", "kind": "bedrock", "options": {"region": "us-east-1",
          "aws_secret_access_key": "AKIA-in-clear"}}, "options.aws_secret_access_key"),
    ],
)  # fmt: skip
def test_an_invalid_provider_is_a_422_naming_the_field(
    admin: httpx.Client, payload: dict[str, Any], field: str
) -> None:
    assert problem_of(admin.post("/api/v1/providers", json=payload), 422)["field"] == field


def test_a_service_key_may_not_read_or_change_the_configuration(admin: httpx.Client) -> None:
    key = make_key(admin, "service", service="svc")["key"]
    headers = bearer(key)
    problem_of(admin.get("/api/v1/providers", headers=headers), 403)
    body = {"name": "x", "kind": "ollama"}
    problem_of(admin.post("/api/v1/providers", json=body, headers=headers), 403)


def test_an_analyst_may_read_but_not_write(admin: httpx.Client) -> None:
    make_config(admin)
    headers = bearer(make_key(admin, "analyst", user=_user(admin))["key"])
    assert admin.get("/api/v1/aliases/chat", headers=headers).status_code == 200
    problem_of(admin.delete("/api/v1/aliases/chat", headers=headers), 403)
    body = {"name": "x", "provider": "openai-main", "model": "m"}
    problem_of(admin.post("/api/v1/deployments", json=body, headers=headers), 403)


def test_a_developer_configures_deployments_and_aliases_but_not_providers(
    admin: httpx.Client,
) -> None:
    make_config(admin)
    headers = bearer(make_key(admin, "developer", user=_user(admin))["key"])
    body = {"name": "d2", "provider": "openai-main", "model": "gpt-4o"}
    created(admin.post("/api/v1/deployments", json=body, headers=headers))
    evil = {"name": "openai-main", "kind": "openai", "base_url": "https://evil.example.com",
            "api_key": "env:OPENAI_API_KEY"}  # fmt: skip
    problem_of(admin.put("/api/v1/providers/openai-main", json=evil, headers=headers), 403)


def test_every_change_leaves_an_audit_entry(admin: httpx.Client) -> None:
    make_config(admin)
    admin.delete("/api/v1/aliases/chat")
    entries = admin.get("/api/v1/audit", params={"limit": 1000}).json()["items"]
    actions = [
        e["action"]
        for e in entries
        if e["resource_type"] in {"providers", "deployments", "aliases"}
    ]
    assert actions == ["provider.create", "deployment.create", "alias.create", "alias.delete"]
    assert admin.get("/api/v1/audit/verify").json()["ok"] is True


def test_every_change_moves_the_config_version(admin: httpx.Client, capstan: Capstan) -> None:
    versions = capstan.services.versions
    before = versions.current()
    created(admin.post("/api/v1/providers", json={"name": "local", "kind": "ollama"}))
    after_create = versions.current()
    admin.delete("/api/v1/providers/local")
    assert before < after_create < versions.current()


def test_replacing_with_the_same_content_changes_nothing(
    admin: httpx.Client, capstan: Capstan
) -> None:
    body = {"name": "local", "kind": "ollama"}
    created(admin.post("/api/v1/providers", json=body))
    version = capstan.services.versions.current()
    assert admin.put("/api/v1/providers/local", json=body).status_code == 200
    assert capstan.services.versions.current() == version


def _user(admin: httpx.Client) -> str:
    response = admin.post("/api/v1/users", json={"email": "dev@example.com", "name": "Dev"})
    email: str = response.json()["email"]
    return email


def _org(capstan: Capstan) -> Any:
    return capstan.services.directory.organization().id


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(capsys, monkeypatch)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_cli_creates_lists_shows_and_deletes(cli: Cli, capstan: Capstan) -> None:
    cli.local(capstan)
    steps = [
        ("providers", "create", "local", "--kind", "ollama"),
        ("deployments", "create", "llama@local", "--provider", "local", "--model", "llama3.2",
         "--timeout", "20", "--max-concurrency", "4", "-o", "num_ctx=8192",
         "--max-retries", "0", "--stream-idle-timeout", "5"),
        ("aliases", "create", "chat", "--target", "llama@local:3", "--strategy", "priority",
         "--fallback-on-content-policy"),
    ]  # fmt: skip
    for argv in steps:
        assert cli(*argv)[0] == 0
    [alias] = cli.json("aliases", "list")
    assert alias["targets"] == [{"deployment": "llama@local", "weight": 3, "priority": 0}]
    assert alias["fallback_on_content_policy"] is True
    shown = cli.json("deployments", "show", "llama@local")
    assert (shown["timeout_s"], shown["options"]) == (20.0, {"num_ctx": "8192"})
    assert (shown["max_retries"], shown["stream_idle_timeout_s"]) == (0, 5.0)
    code, _, err = cli("deployments", "delete", "llama@local")
    assert (code, err.strip()) == (
        1,
        "error: deployment 'llama@local' is still used by alias chat (HTTP 409)",
    )
    for group, name in (
        ("aliases", "chat"),
        ("deployments", "llama@local"),
        ("providers", "local"),
    ):
        assert cli(group, "delete", name)[0] == 0
    assert cli.json("providers", "list") == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_cli_reads_a_key_from_stdin_and_never_prints_it(
    cli: Cli, capstan: Capstan, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli.local(capstan)
    monkeypatch.setattr("sys.stdin", io.StringIO(LITERAL_KEY + "\n"))
    code, out, _ = cli(
        "providers", "create", "anthropic-main", "--kind", "anthropic", "--api-key-stdin"
    )
    assert code == 0
    shown = cli.json("providers", "show", "anthropic-main")
    assert shown["api_key"] == "stored"
    assert LITERAL_KEY not in out + json.dumps(shown)
    org = capstan.services.directory.organization().id
    assert capstan.services.vault.reveal("provider-anthropic-main-api-key", org) == LITERAL_KEY
