"""`/api/v1/budgets` and `/api/v1/prices`: who may do what, what is refused, what is audited."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.apiclient import bearer, make_key, make_tree


def budget(**fields: Any) -> dict[str, Any]:
    return {"name": "cap", "scope": "org", "period": "monthly", "limit_usd": "12.50", **fields}


def test_an_admin_creates_a_budget_on_a_team_by_name(admin: httpx.Client) -> None:
    make_tree(admin)

    response = admin.post("/api/v1/budgets", json=budget(scope="team:credit"))

    assert response.status_code == 201, response.text
    created = response.json()
    assert (created["scope_kind"], created["limit_usd"], created["thresholds"]) == (
        "team",
        "12.50",
        [50, 80, 100],
    )


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"limit_usd": "-1"}, "negative"),
        ({"limit_usd": "1.0000001"}, "6 decimals"),
        ({"period": "hourly"}, "period"),
        ({"action": "explode"}, "action"),
        ({"action": "downgrade"}, "downgrade-to"),
        ({"scope": "team:nowhere"}, "no team"),
        ({"scope": "tag:novalue"}, "tag:KEY=VALUE"),
        ({"scope": "galaxy:far"}, "scope must be"),
        ({"thresholds": [0, 50]}, "thresholds"),
    ],
)
def test_a_bad_budget_is_refused_with_a_problem_naming_it(
    admin: httpx.Client, fields: dict[str, Any], problem: str
) -> None:
    response = admin.post("/api/v1/budgets", json=budget(**fields))

    assert 400 <= response.status_code < 500
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem in response.json()["detail"]


def test_two_budgets_cannot_share_a_name(admin: httpx.Client) -> None:
    assert admin.post("/api/v1/budgets", json=budget()).status_code == 201

    assert admin.post("/api/v1/budgets", json=budget()).status_code == 409


@pytest.mark.parametrize(
    ("role", "method", "path", "status"),
    [
        ("analyst", "GET", "/api/v1/budgets", 200),
        ("analyst", "POST", "/api/v1/budgets", 403),
        ("analyst", "GET", "/api/v1/prices", 200),
        ("analyst", "POST", "/api/v1/prices", 403),
        ("developer", "GET", "/api/v1/budgets", 403),
        ("developer", "POST", "/api/v1/budgets", 403),
        ("service", "GET", "/api/v1/budgets", 403),
        ("service", "POST", "/api/v1/prices", 403),
    ],
)
def test_only_admins_set_budgets_and_prices_and_only_finance_reads_them(
    admin: httpx.Client, anonymous: httpx.Client, role: str, method: str, path: str, status: int
) -> None:
    key = make_key(admin, role)["key"]
    body = (
        budget()
        if path.endswith("budgets")
        else {"target_kind": "model", "target": "m", "prices": {"input": "1", "output": "2"}}
    )

    response = anonymous.request(
        method, path, headers=bearer(key), json=body if method == "POST" else None
    )

    assert response.status_code == status, response.text


def test_a_team_admin_cannot_budget_another_team(
    admin: httpx.Client, anonymous: httpx.Client
) -> None:
    make_tree(admin)
    team_admin = bearer(make_key(admin, "admin", team="credit")["key"])

    mine = anonymous.post("/api/v1/budgets", headers=team_admin, json=budget(scope="team:credit"))
    theirs = anonymous.post(
        "/api/v1/budgets", headers=team_admin, json=budget(name="x", scope="team:triage")
    )

    assert mine.status_code == 201, mine.text
    assert theirs.status_code == 403


def test_creating_and_deleting_a_budget_is_audited(admin: httpx.Client) -> None:
    created = admin.post("/api/v1/budgets", json=budget()).json()
    assert admin.delete(f"/api/v1/budgets/{created['name']}").status_code == 204

    entries = admin.get("/api/v1/audit", params={"resource_type": "budgets"}).json()["items"]

    assert [e["action"] for e in entries][-2:] == ["budget.create", "budget.delete"]


def test_a_negotiated_price_overrides_the_list_price_from_its_date(admin: httpx.Client) -> None:
    before = {p["target"]: p for p in admin.get("/api/v1/prices").json()}["gpt-4o-mini"]
    response = admin.post(
        "/api/v1/prices",
        json={
            "target_kind": "model",
            "target": "gpt-4o-mini",
            "prices": {"input": "0.10", "output": "0.40"},
            "effective_from": "2026-01-01T00:00:00Z",
        },
    )
    assert response.status_code == 201, response.text

    now = {p["target"]: p for p in admin.get("/api/v1/prices").json()}["gpt-4o-mini"]
    then = {
        p["target"]: p
        for p in admin.get("/api/v1/prices", params={"at": "2025-12-31T00:00:00Z"}).json()
    }["gpt-4o-mini"]

    assert (before["source"], now["source"], then["source"]) == ("catalog", "override", "catalog")
    assert (now["prices"]["input"], now["prices"]["output"]) == ("0.10", "0.40")
    assert then["prices"] == before["prices"]


def test_a_price_with_more_than_six_decimals_is_refused(admin: httpx.Client) -> None:
    response = admin.post(
        "/api/v1/prices",
        json={
            "target_kind": "model",
            "target": "m",
            "prices": {"input": "0.0000001", "output": "1"},
        },
    )

    assert response.status_code == 422
    assert "6 decimals" in response.json()["detail"]
