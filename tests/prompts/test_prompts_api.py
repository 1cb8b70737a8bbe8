"""`/api/v1/prompts`: immutable versions, labels that move with an audit entry, rollback as an
undo stack, diffs, ETags, and an approver for `production` where the project asks for one."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.apiclient import bearer, make_key, make_tree

PROMPT: dict[str, Any] = {
    "name": "support-reply",
    "model": "chat-default",
    "params": {"temperature": 0.2, "max_tokens": 400},
    "variables": {"product": "string", "tier": {"type": "string", "enum": ["free", "pro"]}},
    "messages": [
        {
            "role": "system",
            "content": "You answer questions about {{ product }} for {{ tier }} customers.",
        }
    ],
}


def push(client: httpx.Client, **changes: Any) -> httpx.Response:
    return client.post("/api/v1/prompts", json={**PROMPT, **changes})


def move(client: httpx.Client, version: int, label: str = "production") -> httpx.Response:
    return client.put(f"/api/v1/prompts/support-reply/labels/{label}", json={"version": version})


def test_the_first_push_creates_version_1(admin: httpx.Client) -> None:
    response = push(admin, message="first draft")
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["version"], body["created"], body["message"]) == (1, True, "first draft")
    assert len(body["content_hash"]) == 64


def test_pushing_unchanged_content_makes_no_new_version(admin: httpx.Client) -> None:
    push(admin)
    again = push(admin, message="same words, another message")
    assert again.status_code == 200
    assert (again.json()["version"], again.json()["created"]) == (1, False)


def test_changed_content_makes_the_next_version(admin: httpx.Client) -> None:
    push(admin)
    response = push(admin, params={"temperature": 0.5})
    assert (response.status_code, response.json()["version"]) == (201, 2)


def test_a_template_that_does_not_compile_is_refused_naming_the_message(
    admin: httpx.Client,
) -> None:
    response = push(admin, messages=[{"role": "system", "content": "{% if %}"}])
    assert response.status_code == 422
    assert response.json()["field"] == "messages[0].content"


def test_an_unknown_model_parameter_is_refused(admin: httpx.Client) -> None:
    response = push(admin, params={"temprature": 0.2})
    assert response.status_code == 422
    assert response.json()["field"] == "params.temprature"


def test_a_label_move_is_audited(admin: httpx.Client) -> None:
    push(admin)
    assert move(admin, 1).status_code == 200
    entries = admin.get("/api/v1/audit", params={"limit": 1000}).json()["items"]
    moves = [entry for entry in entries if entry["action"] == "prompt.label.move"]
    assert len(moves) == 1
    assert moves[0]["resource_type"] == "prompt_labels"
    assert moves[0]["before_digest"] is None  # the label did not exist before


def test_rollback_undoes_label_moves_one_at_a_time(admin: httpx.Client) -> None:
    push(admin)
    push(admin, params={"temperature": 0.5})
    push(admin, params={"temperature": 0.7})
    for version in (1, 2, 3):
        move(admin, version)
    rollback = "/api/v1/prompts/support-reply/labels/production/rollback"
    assert admin.post(rollback).json()["version"] == 2
    assert admin.post(rollback).json()["version"] == 1
    refused = admin.post(rollback)
    assert refused.status_code == 409
    moves = admin.get("/api/v1/prompts/support-reply/history").json()["label_moves"]
    assert [(m["kind"], m["to_version"], m["undone"]) for m in moves] == [
        ("rollback", 1, False),
        ("rollback", 2, False),
        ("move", 3, True),
        ("move", 2, True),
        ("move", 1, False),
    ]


def test_a_diff_shows_what_changed_between_two_versions(admin: httpx.Client) -> None:
    push(admin)
    push(admin, params={"temperature": 0.5, "max_tokens": 400})
    diff = admin.get("/api/v1/prompts/support-reply/diff", params={"from": 1, "to": 2}).json()
    assert "-  temperature: 0.2" in diff["diff"]
    assert "+  temperature: 0.5" in diff["diff"]
    assert "max_tokens" not in diff["diff"].replace("   max_tokens: 400", "")


def test_reading_by_label_sends_an_etag_and_answers_304_while_unchanged(
    admin: httpx.Client,
) -> None:
    push(admin)
    move(admin, 1)
    first = admin.get("/api/v1/prompts/support-reply", params={"label": "production"})
    assert first.status_code == 200
    etag = first.headers["etag"]
    again = admin.get(
        "/api/v1/prompts/support-reply",
        params={"label": "production"},
        headers={"if-none-match": etag},
    )
    assert again.status_code == 304
    push(admin, params={"temperature": 0.9})
    move(admin, 2)
    moved = admin.get(
        "/api/v1/prompts/support-reply",
        params={"label": "production"},
        headers={"if-none-match": etag},
    )
    assert (moved.status_code, moved.json()["version"]) == (200, 2)


def test_render_returns_the_messages_the_gateway_would_send(admin: httpx.Client) -> None:
    push(admin)
    response = admin.post(
        "/api/v1/prompts/support-reply/render",
        json={"version": 1, "variables": {"product": "Ledger", "tier": "pro"}},
    )
    assert response.status_code == 200, response.text
    assert response.json()["messages"] == [
        {"role": "system", "content": "You answer questions about Ledger for pro customers."}
    ]


def test_render_names_a_value_outside_the_enum_with_a_400(admin: httpx.Client) -> None:
    push(admin)
    response = admin.post(
        "/api/v1/prompts/support-reply/render",
        json={"variables": {"product": "Ledger", "tier": "gold"}},
    )
    assert response.status_code == 400
    problem = response.json()
    assert problem["field"] == "prompt.variables.tier"
    assert "free" in problem["detail"]


def test_a_service_key_reads_prompts_but_cannot_push(
    admin: httpx.Client, anonymous: httpx.Client
) -> None:
    push(admin)
    service = make_key(admin, "service")["key"]
    assert anonymous.get("/api/v1/prompts", headers=bearer(service)).status_code == 200
    refused = anonymous.post(
        "/api/v1/prompts", json={**PROMPT, "name": "other"}, headers=bearer(service)
    )
    assert refused.status_code == 403


@pytest.fixture
def approval_project(admin: httpx.Client) -> None:
    make_tree(admin)
    response = admin.post(
        "/api/v1/projects", json={"name": "support", "team": "credit", "prompt_approval": True}
    )
    assert response.status_code == 201, response.text
    assert push(admin, project="support").status_code == 201


@pytest.mark.usefixtures("approval_project")
def test_where_the_project_asks_for_approval_a_developer_cannot_move_production(
    admin: httpx.Client, anonymous: httpx.Client
) -> None:
    developer = make_key(admin, "developer")["key"]
    refused = anonymous.put(
        "/api/v1/prompts/support-reply/labels/production",
        json={"version": 1},
        headers=bearer(developer),
    )
    assert refused.status_code == 403
    assert "approver" in refused.json()["detail"]
    staging = anonymous.put(
        "/api/v1/prompts/support-reply/labels/staging",
        json={"version": 1},
        headers=bearer(developer),
    )
    assert staging.status_code == 200, staging.text


@pytest.mark.usefixtures("approval_project")
def test_where_the_project_asks_for_approval_an_approver_moves_production(
    admin: httpx.Client, anonymous: httpx.Client
) -> None:
    approver = make_key(admin, "approver")["key"]
    moved = anonymous.put(
        "/api/v1/prompts/support-reply/labels/production",
        json={"version": 1},
        headers=bearer(approver),
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["updated_by"].startswith("key:")
