"""The organization tree over /api: creation, listing, pagination, and bad input as problem+json."""

from __future__ import annotations

import httpx
import pytest

from tests.apiclient import make_tree

PROBLEM = "application/problem+json"


def problem_of(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, object] = response.json()
    assert str(body["type"]).startswith("urn:capstan:problem:")
    return body


def test_a_department_team_and_project_are_created_and_listed(admin: httpx.Client) -> None:
    make_tree(admin)
    projects = admin.get("/api/v1/projects").json()["items"]
    teams = {t["id"]: t for t in admin.get("/api/v1/teams").json()["items"]}
    assert {p["name"] for p in projects} == {"loans", "intake"}
    loans = next(p for p in projects if p["name"] == "loans")
    assert teams[loans["team_id"]]["name"] == "credit"
    assert loans["log_payloads"] is False


def test_lists_are_paginated_with_a_cursor(admin: httpx.Client) -> None:
    for i in range(5):
        admin.post("/api/v1/departments", json={"name": f"d{i}"})
    first = admin.get("/api/v1/departments", params={"limit": 2}).json()
    second = admin.get(
        "/api/v1/departments", params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    third = admin.get(
        "/api/v1/departments", params={"limit": 2, "cursor": second["next_cursor"]}
    ).json()
    names = [d["name"] for page in (first, second, third) for d in page["items"]]
    assert names == [f"d{i}" for i in range(5)]
    assert third["next_cursor"] is None


def test_a_user_is_created_in_a_team(admin: httpx.Client) -> None:
    make_tree(admin)
    response = admin.post(
        "/api/v1/users", json={"email": "ana@example.com", "name": "Ana", "team": "credit"}
    )
    assert response.status_code == 201
    assert response.json()["department_id"] is not None


def test_a_duplicate_name_is_a_409_naming_the_field(admin: httpx.Client) -> None:
    admin.post("/api/v1/departments", json={"name": "risk"})
    body = problem_of(admin.post("/api/v1/departments", json={"name": "risk"}), 409)
    assert body["field"] == "name"


def test_a_duplicate_email_is_a_409(admin: httpx.Client) -> None:
    admin.post("/api/v1/users", json={"email": "a@example.com", "name": "A"})
    body = problem_of(
        admin.post("/api/v1/users", json={"email": "a@example.com", "name": "B"}), 409
    )
    assert body["field"] == "email"


def test_an_unknown_parent_is_a_404_naming_it(admin: httpx.Client) -> None:
    body = problem_of(admin.post("/api/v1/teams", json={"name": "t", "department": "nowhere"}), 404)
    assert body["field"] == "department"
    assert "nowhere" in str(body["detail"])


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "x" * 101}, "body.name"),
        ({"name": ""}, "body.name"),
        ({"name": 42}, "body.name"),
        ({"name": "../etc"}, "body.name"),
        ({"name": "ok", "colour": "red"}, "body.colour"),
        ({}, "body.name"),
    ],
)
def test_invalid_bodies_are_422_naming_the_field(
    admin: httpx.Client, payload: dict[str, object], field: str
) -> None:
    body = problem_of(admin.post("/api/v1/departments", json=payload), 422)
    assert body["field"] == field
    assert str(body["detail"]).startswith(field)


def test_malformed_json_is_a_400(admin: httpx.Client) -> None:
    response = admin.post(
        "/api/v1/departments", content=b'{"name": ', headers={"content-type": "application/json"}
    )
    assert problem_of(response, 400)["type"] == "urn:capstan:problem:malformed-body"


def test_an_invalid_query_parameter_is_a_422(admin: httpx.Client) -> None:
    body = problem_of(admin.get("/api/v1/departments", params={"limit": 0}), 422)
    assert body["field"] == "query.limit"


def test_a_malformed_key_id_is_a_422_and_an_unknown_one_a_404(admin: httpx.Client) -> None:
    problem_of(admin.post("/api/v1/keys/not-a-uuid/revoke"), 422)
    problem_of(admin.post("/api/v1/keys/0195f3f2-0000-7000-8000-000000000000/revoke"), 404)


def test_an_unknown_role_is_rejected(admin: httpx.Client) -> None:
    body = problem_of(admin.post("/api/v1/keys", json={"role": "superuser"}), 422)
    assert body["field"] == "body.role"


def test_two_scopes_at_once_are_rejected(admin: httpx.Client) -> None:
    make_tree(admin)
    response = admin.post(
        "/api/v1/keys", json={"role": "service", "team": "credit", "project": "loans"}
    )
    assert problem_of(response, 422)["field"] == "scope"


def test_an_unknown_route_is_a_problem_404(admin: httpx.Client) -> None:
    problem_of(admin.get("/api/v1/nothing-here"), 404)


def test_the_openapi_document_is_served(anonymous: httpx.Client) -> None:
    spec = anonymous.get("/api/openapi.json").json()
    assert {"/api/v1/keys", "/api/v1/departments", "/api/v1/audit"} <= set(spec["paths"])


def test_every_change_is_in_the_audit_log(admin: httpx.Client) -> None:
    make_tree(admin)
    actions = [
        e["action"] for e in admin.get("/api/v1/audit", params={"limit": 1000}).json()["items"]
    ]
    assert actions.count("department.create") == 2
    assert actions.count("team.create") == 2
    assert actions.count("project.create") == 2
    assert admin.get("/api/v1/audit/verify").json()["ok"] is True


def test_readyz_reports_a_current_schema(anonymous: httpx.Client) -> None:
    response = anonymous.get("/readyz")
    assert response.status_code == 200
    checks = response.json()["checks"]
    assert (checks["database"], checks["migrations"]) == ("ok", "current")
    assert checks["events"] == {"waiting": 0, "dropped": 0}
