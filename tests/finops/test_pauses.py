"""Pausing a key, project, team or department stops its model calls on every gateway, with an
error that says who paused it, why and since when; resuming lets them through again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.apiclient import bearer, make_key, make_tree
from tests.gateway.setup import GatewayUnderTest, start_gateway

DEPLOYMENT = "gpt-4o-mini@sim-openai"
RELOAD_S = 0.5  # longer than the config poll interval


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayUnderTest]:
    tmp = Path(tmp_path_factory.mktemp("pauses"))
    for running in start_gateway(tmp):
        with running.admin() as admin:
            make_tree(admin)  # retail → credit → loans, claims → triage → intake
        yield running


def call(gateway: GatewayUnderTest, key: str) -> openai.types.chat.ChatCompletion:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
    return client.chat.completions.create(
        model=DEPLOYMENT, messages=[{"role": "user", "content": "hello"}], max_tokens=5
    )


def pause(gateway: GatewayUnderTest, scope: str, reason: str) -> None:
    with gateway.admin() as admin:
        response = admin.post("/api/v1/pauses", json={"scope": scope, "reason": reason})
        assert response.status_code == 201, response.text
    time.sleep(RELOAD_S)


def resume(gateway: GatewayUnderTest, scope: str) -> None:
    with gateway.admin() as admin:
        response = admin.post("/api/v1/pauses/resume", json={"scope": scope})
        assert response.status_code == 200, response.text
    time.sleep(RELOAD_S)


def test_a_paused_project_is_refused_with_who_why_and_since(gateway: GatewayUnderTest) -> None:
    with gateway.admin() as admin:
        key = make_key(admin, "service", project="loans")["key"]
    pause(gateway, "project:loans", "runaway batch job, see INC-42")
    try:
        with pytest.raises(openai.PermissionDeniedError) as refused:
            call(gateway, key)
    finally:
        resume(gateway, "project:loans")

    message = refused.value.body["message"]  # type: ignore[index]
    assert "project loans is paused" in message
    assert "runaway batch job, see INC-42" in message
    assert "by " in message
    assert " since 20" in message
    assert refused.value.body["code"] == "scope_paused"  # type: ignore[index]


def test_a_resumed_project_calls_models_again(gateway: GatewayUnderTest) -> None:
    with gateway.admin() as admin:
        key = make_key(admin, "service", project="intake")["key"]
    pause(gateway, "project:intake", "budget review")

    resume(gateway, "project:intake")

    assert call(gateway, key).choices


def test_pausing_a_department_stops_the_keys_of_its_projects(gateway: GatewayUnderTest) -> None:
    with gateway.admin() as admin:
        key = make_key(admin, "service", project="intake")["key"]
        other = make_key(admin, "service", project="loans")["key"]
    pause(gateway, "department:claims", "quarter closed")
    try:
        with pytest.raises(openai.PermissionDeniedError):
            call(gateway, key)
        assert call(gateway, other).choices  # retail is not paused
    finally:
        resume(gateway, "department:claims")


def test_only_admins_pause_and_every_pause_is_audited(gateway: GatewayUnderTest) -> None:
    with gateway.admin() as admin:
        developer = make_key(admin, "developer")["key"]
        refused = admin.post(
            "/api/v1/pauses",
            headers=bearer(developer),
            json={"scope": "team:credit", "reason": "x"},
        )
    assert refused.status_code == 403

    pause(gateway, "team:credit", "audit me")
    resume(gateway, "team:credit")

    with gateway.admin() as admin:
        entries = admin.get("/api/v1/audit", params={"resource_type": "pauses"}).json()["items"]
        history = admin.get("/api/v1/pauses", params={"include_resumed": True}).json()
    assert [e["action"] for e in entries][-2:] == ["pause.start", "pause.end"]
    [credit] = [p for p in history if p["scope_label"] == "team credit"]
    assert credit["reason"] == "audit me"
    assert credit["resumed_at"] is not None


def test_a_scope_cannot_be_paused_twice_or_resumed_when_running(
    gateway: GatewayUnderTest,
) -> None:
    pause(gateway, "team:triage", "first")
    try:
        with gateway.admin() as admin:
            again = admin.post("/api/v1/pauses", json={"scope": "team:triage", "reason": "x"})
        assert again.status_code == 409
    finally:
        resume(gateway, "team:triage")
    with gateway.admin() as admin:
        running = admin.post("/api/v1/pauses/resume", json={"scope": "team:triage"})
    assert running.status_code == 404
