"""`GET /api/v1/requests`: the request log, filtered, scoped, paged and with payloads guarded.

Events are inserted with a plain write session (test data, as the event pipeline would leave
it) and read back through a real server on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from capstan.bootstrap import system_principal
from capstan.ids import new_id
from capstan.store.schema import RequestEvent
from tests.apiclient import bearer, make_key
from tests.conftest import Capstan

PROBLEM = "application/problem+json"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Tree:
    """One organization with two projects in one team, and a second department and team."""

    org_id: uuid.UUID
    department_id: uuid.UUID
    team_id: uuid.UUID
    scoring_id: uuid.UUID
    fraud_id: uuid.UUID
    other_department_id: uuid.UUID
    other_team_id: uuid.UUID


def make_tree(capstan: Capstan) -> Tree:
    directory = capstan.services.directory
    admin = system_principal(directory.organization())
    risk = directory.create_department(admin, "risk")
    credit = directory.create_team(admin, "credit", "risk")
    scoring = directory.create_project(admin, "scoring", "credit", log_payloads=True)
    fraud = directory.create_project(admin, "fraud", "credit")
    claims = directory.create_department(admin, "claims")
    triage = directory.create_team(admin, "triage", "claims")
    return Tree(risk.org_id, risk.id, credit.id, scoring.id, fraud.id, claims.id, triage.id)


def event(tree: Tree, at: datetime, **fields: Any) -> RequestEvent:
    """A successful chat call in project `scoring` at `at`, unless `fields` say otherwise."""
    values: dict[str, Any] = {
        "id": new_id(),
        "created_at": at,
        "org_id": tree.org_id,
        "department_id": tree.department_id,
        "team_id": tree.team_id,
        "project_id": tree.scoring_id,
        "key_id": None,
        "user_id": None,
        "route": "chat.completions",
        "model": "gpt-4o-mini",
        "deployment": "openai-mini",
        "provider": "openai",
        "upstream_model": "gpt-4o-mini-2024-07-18",
        "stream": False,
        "attempts": 1,
        "status": 200,
        "error_type": None,
        "error_message": None,
        "prompt_tokens": 12,
        "completion_tokens": 30,
        "cached_tokens": None,
        "latency_ms": 123.4,
        "ttft_ms": None,
        "tags": {},
        "payload": {"request": {"messages": [{"role": "user", "content": "hi"}]}},
    }
    values.update(fields)
    return RequestEvent(**values)


def insert(capstan: Capstan, *events: RequestEvent) -> list[str]:
    with capstan.services.store.write() as session:
        session.add_all(events)
    return [str(e.id) for e in events]


def newest_first(events: list[RequestEvent]) -> list[str]:
    return [str(e.id) for e in sorted(events, key=lambda e: (e.created_at, e.id), reverse=True)]


def listed(client: httpx.Client, **params: Any) -> list[str]:
    response = client.get("/api/v1/requests", params=params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


@pytest.fixture
def tree(capstan: Capstan) -> Tree:
    return make_tree(capstan)


def test_requests_are_listed_newest_first(
    admin: httpx.Client, capstan: Capstan, tree: Tree
) -> None:
    events = [event(tree, T0 + timedelta(seconds=s)) for s in (5, 0, 9, 3)]
    insert(capstan, *events)
    assert listed(admin) == newest_first(events)


FILTER_CASES: list[tuple[str, dict[str, Any], Any]] = [
    ("model", {"model": "claude-haiku"}, "claude-haiku"),
    ("deployment", {"deployment": "anthropic-haiku"}, "anthropic-haiku"),
    ("provider", {"provider": "anthropic"}, "anthropic"),
    ("status", {"status": 429, "error_type": "rate_limited"}, 429),
    ("error_type", {"status": 504, "error_type": "timeout"}, "timeout"),
    ("outcome", {"status": 502, "error_type": "upstream_error"}, "error"),
    ("stream", {"stream": True}, "true"),
    ("since", {"created_at": T0 + timedelta(days=1)}, (T0 + timedelta(days=1)).isoformat()),
    ("until", {"created_at": T0 - timedelta(days=1)}, T0.isoformat()),
]


@pytest.mark.parametrize(
    ("param", "special", "value"), FILTER_CASES, ids=[c[0] for c in FILTER_CASES]
)
def test_each_filter_narrows_the_listing_to_the_matching_request(
    admin: httpx.Client,
    capstan: Capstan,
    tree: Tree,
    param: str,
    special: dict[str, Any],
    value: Any,
) -> None:
    insert(capstan, *(event(tree, T0 + timedelta(seconds=s)) for s in range(3)))
    [match] = insert(capstan, event(tree, T0 + timedelta(seconds=1), **special))
    assert listed(admin, **{param: value}) == [match]


@pytest.mark.parametrize("level", ["project_id", "team_id", "department_id", "key_id", "user_id"])
def test_each_id_filter_narrows_the_listing_to_the_matching_request(
    admin: httpx.Client, capstan: Capstan, tree: Tree, level: str
) -> None:
    insert(capstan, *(event(tree, T0 + timedelta(seconds=s)) for s in range(3)))
    elsewhere: dict[str, dict[str, uuid.UUID | None]] = {
        "project_id": {"project_id": tree.fraud_id},
        "team_id": {
            "team_id": tree.other_team_id,
            "department_id": tree.other_department_id,
            "project_id": None,
        },
        "department_id": {
            "department_id": tree.other_department_id,
            "team_id": None,
            "project_id": None,
        },
        "key_id": {"key_id": new_id()},
        "user_id": {"user_id": new_id()},
    }
    fields = elsewhere[level]
    [match] = insert(capstan, event(tree, T0 + timedelta(seconds=1), **fields))
    assert listed(admin, **{level: str(fields[level])}) == [match]


def test_outcome_ok_leaves_out_failed_requests(
    admin: httpx.Client, capstan: Capstan, tree: Tree
) -> None:
    ok = insert(capstan, event(tree, T0))
    insert(capstan, event(tree, T0 + timedelta(seconds=1), status=429, error_type="rate_limited"))
    assert listed(admin, outcome="ok") == ok


def test_every_tag_given_must_match(admin: httpx.Client, capstan: Capstan, tree: Tree) -> None:
    prod, dev, _ops = insert(
        capstan,
        event(tree, T0 + timedelta(seconds=2), tags={"team": "risk", "env": "prod"}),
        event(tree, T0 + timedelta(seconds=1), tags={"team": "risk", "env": "dev"}),
        event(tree, T0, tags={"team": "ops"}),
    )
    assert listed(admin, tag="team=risk") == [prod, dev]
    assert listed(admin, tag=["team=risk", "env=prod"]) == [prod]
    assert listed(admin, tag="team=nobody") == []


def test_pages_return_every_request_exactly_once(
    admin: httpx.Client, capstan: Capstan, tree: Tree
) -> None:
    # Three requests share each timestamp, so the id must break ties between pages.
    events = [event(tree, T0 + timedelta(seconds=i // 3)) for i in range(23)]
    insert(capstan, *events)
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 5}
    pages = 0
    while True:
        response = admin.get("/api/v1/requests", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        seen.extend(item["id"] for item in body["items"])
        pages += 1
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert seen == newest_first(events)
    assert pages == 5


def test_a_project_key_sees_only_its_projects_requests(
    admin: httpx.Client, anonymous: httpx.Client, capstan: Capstan, tree: Tree
) -> None:
    [own] = insert(capstan, event(tree, T0))
    [other] = insert(capstan, event(tree, T0, project_id=tree.fraud_id))
    insert(capstan, event(tree, T0, department_id=None, team_id=None, project_id=None))
    key = make_key(admin, "developer", project="scoring")["key"]
    response = anonymous.get("/api/v1/requests", headers=bearer(key))
    assert [item["id"] for item in response.json()["items"]] == [own]
    assert anonymous.get(f"/api/v1/requests/{own}", headers=bearer(key)).status_code == 200
    hidden = anonymous.get(f"/api/v1/requests/{other}", headers=bearer(key))
    assert hidden.status_code == 404
    assert hidden.headers["content-type"] == PROBLEM


def test_a_service_key_may_not_read_requests(admin: httpx.Client, anonymous: httpx.Client) -> None:
    key = make_key(admin, "service")["key"]
    response = anonymous.get("/api/v1/requests", headers=bearer(key))
    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM


def test_payload_is_null_without_payloads_read(
    admin: httpx.Client, capstan: Capstan, tree: Tree
) -> None:
    [request_id] = insert(capstan, event(tree, T0))
    assert admin.get("/api/v1/requests").json()["items"][0]["payload"] is None
    assert admin.get(f"/api/v1/requests/{request_id}").json()["payload"] is None


def test_payload_is_shown_with_payloads_read(
    admin: httpx.Client, anonymous: httpx.Client, capstan: Capstan, tree: Tree
) -> None:
    logged = {"request": {"messages": [{"role": "user", "content": "hi"}]}}
    [request_id] = insert(capstan, event(tree, T0, payload=logged))
    analyst = bearer(make_key(admin, "analyst")["key"])
    listing = anonymous.get("/api/v1/requests", headers=analyst).json()
    assert listing["items"][0]["payload"] == logged
    shown = anonymous.get(f"/api/v1/requests/{request_id}", headers=analyst).json()
    assert shown["payload"] == logged


def test_one_request_is_read_back_whole(admin: httpx.Client, capstan: Capstan, tree: Tree) -> None:
    [request_id] = insert(capstan, event(tree, T0, tags={"env": "prod"}, cached_tokens=4))
    body = admin.get(f"/api/v1/requests/{request_id}").json()
    assert body["id"] == request_id
    assert datetime.fromisoformat(body["created_at"]) == T0
    assert body["model"] == "gpt-4o-mini"
    assert body["status"] == 200
    assert body["tags"] == {"env": "prod"}
    assert body["cached_tokens"] == 4


def test_an_unknown_id_is_a_404_problem(admin: httpx.Client) -> None:
    response = admin.get(f"/api/v1/requests/{new_id()}")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "urn:capstan:problem:not-found"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "abc"}, "query.status"),
        ({"since": "yesterday-ish"}, "query.since"),
        ({"outcome": "maybe"}, "query.outcome"),
        ({"project_id": "scoring"}, "query.project_id"),
        ({"limit": 0}, "query.limit"),
        ({"limit": 501}, "query.limit"),
        ({"tag": "no-equals-sign"}, "query.tag"),
        ({"cursor": "not-a-cursor"}, "query.cursor"),
    ],
)
def test_a_bad_filter_value_is_a_422_problem_naming_the_field(
    admin: httpx.Client, params: dict[str, Any], field: str
) -> None:
    response = admin.get("/api/v1/requests", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["field"] == field
