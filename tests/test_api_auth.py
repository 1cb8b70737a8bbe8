"""Authentication and authorization on /api: 401 for a bad key, 403 for a missing role or scope."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import pytest

from capstan.clock import utcnow
from tests.apiclient import bearer, make_key, make_tree
from tests.servers import RunningServer

PROBLEM = "application/problem+json"


def test_a_service_key_gets_403_on_the_key_list(
    admin: httpx.Client, anonymous: httpx.Client
) -> None:
    service = make_key(admin, "service")
    response = anonymous.get("/api/v1/keys", headers=bearer(service["key"]))
    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "urn:capstan:problem:forbidden"


def test_an_admin_key_gets_200_on_the_key_list(admin: httpx.Client) -> None:
    response = admin.get("/api/v1/keys")
    assert response.status_code == 200
    assert [k["role"] for k in response.json()["items"]] == ["admin"]


def test_a_revoked_key_gets_401(admin: httpx.Client, anonymous: httpx.Client) -> None:
    other = make_key(admin, "admin")
    assert anonymous.get("/api/v1/keys", headers=bearer(other["key"])).status_code == 200
    assert admin.post(f"/api/v1/keys/{other['id']}/revoke").status_code == 200
    deadline = time.monotonic() + 1.0
    while anonymous.get("/api/v1/keys", headers=bearer(other["key"])).status_code != 401:
        assert time.monotonic() < deadline, "the revoked key still works after 1 s"
        time.sleep(0.05)
    response = anonymous.get("/api/v1/keys", headers=bearer(other["key"]))
    assert response.json()["detail"] == "this API key was revoked"


def test_an_unknown_key_gets_401(anonymous: httpx.Client) -> None:
    response = anonymous.get("/api/v1/keys", headers=bearer("cap_" + "x" * 43))
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"] == "Bearer"


def test_a_missing_key_gets_401(anonymous: httpx.Client) -> None:
    assert anonymous.get("/api/v1/departments").status_code == 401


def test_the_key_may_come_in_x_api_key(admin: httpx.Client, anonymous: httpx.Client) -> None:
    key = make_key(admin, "developer")["key"]
    assert anonymous.get("/api/v1/departments", headers={"x-api-key": key}).status_code == 200


def test_an_expired_key_gets_401(admin: httpx.Client, anonymous: httpx.Client) -> None:
    soon = (utcnow() + timedelta(seconds=1)).isoformat()
    key = make_key(admin, "admin", expires_at=soon)["key"]
    assert anonymous.get("/api/v1/keys", headers=bearer(key)).status_code == 200
    time.sleep(1.1)
    response = anonymous.get("/api/v1/keys", headers=bearer(key))
    assert response.status_code == 401
    assert response.json()["detail"] == "this API key has expired"


def test_a_key_cannot_be_created_already_expired(admin: httpx.Client) -> None:
    past = (utcnow() - timedelta(days=1)).isoformat()
    response = admin.post("/api/v1/keys", json={"role": "service", "expires_at": past})
    assert response.status_code == 422
    assert response.json()["field"] == "expires_at"


def test_every_api_route_requires_a_key(server: RunningServer, anonymous: httpx.Client) -> None:
    spec = anonymous.get("/api/openapi.json").json()
    routes = [(m, p) for p, ops in spec["paths"].items() for m in ops if p.startswith("/api/")]
    assert len(routes) >= 10
    for method, path in routes:
        concrete = path.replace("{key_id}", "0195f3f2-0000-7000-8000-000000000000").replace(
            "{name}", "x"
        )
        response = anonymous.request(method.upper(), concrete)
        assert response.status_code == 401, (method, path, response.status_code)


@pytest.mark.parametrize(
    ("role", "method", "path", "status"),
    [
        ("developer", "GET", "/api/v1/departments", 200),
        ("developer", "POST", "/api/v1/departments", 403),
        ("developer", "GET", "/api/v1/audit", 403),
        ("analyst", "GET", "/api/v1/audit", 200),
        ("analyst", "GET", "/api/v1/users", 200),
        ("analyst", "POST", "/api/v1/users", 403),
        ("approver", "GET", "/api/v1/keys", 403),
        ("service", "GET", "/api/v1/departments", 403),
    ],
)
def test_each_role_gets_exactly_its_permissions(
    admin: httpx.Client, anonymous: httpx.Client, role: str, method: str, path: str, status: int
) -> None:
    key = make_key(admin, role)["key"]
    body = {"name": "x", "email": "x@example.com"} if path.endswith("users") else {"name": "x"}
    response = anonymous.request(
        method, path, headers=bearer(key), json=body if method == "POST" else None
    )
    assert response.status_code == status, response.text


def test_a_department_admin_cannot_act_outside_its_department(
    admin: httpx.Client, anonymous: httpx.Client
) -> None:
    make_tree(admin)
    dept_admin = bearer(make_key(admin, "admin", department="retail")["key"])
    allowed = anonymous.post(
        "/api/v1/teams", headers=dept_admin, json={"name": "cards", "department": "retail"}
    )
    denied = anonymous.post(
        "/api/v1/teams", headers=dept_admin, json={"name": "fraud", "department": "claims"}
    )
    assert allowed.status_code == 201
    assert denied.status_code == 403
    assert (
        anonymous.post("/api/v1/departments", headers=dept_admin, json={"name": "x"}).status_code
        == 403
    )


def test_a_scoped_admin_cannot_mint_a_key_broader_than_its_own_scope(
    admin: httpx.Client, anonymous: httpx.Client
) -> None:
    make_tree(admin)
    team_admin = bearer(make_key(admin, "admin", team="credit")["key"])
    assert (
        anonymous.post("/api/v1/keys", headers=team_admin, json={"role": "admin"}).status_code
        == 403
    )
    narrower = anonymous.post(
        "/api/v1/keys", headers=team_admin, json={"role": "service", "project": "loans"}
    )
    assert narrower.status_code == 201


def test_scoped_listings_show_only_what_the_scope_covers(
    admin: httpx.Client, anonymous: httpx.Client
) -> None:
    make_tree(admin)
    make_key(admin, "service", project="intake")
    team_admin = bearer(make_key(admin, "admin", team="credit")["key"])
    projects = anonymous.get("/api/v1/projects", headers=team_admin).json()["items"]
    departments = anonymous.get("/api/v1/departments", headers=team_admin).json()["items"]
    keys = anonymous.get("/api/v1/keys", headers=team_admin).json()["items"]
    assert [p["name"] for p in projects] == ["loans"]
    assert [d["name"] for d in departments] == ["retail"]
    assert {k["scope"] for k in keys} == {"team"}


def test_rotation_issues_a_new_key_and_retires_the_old(
    admin: httpx.Client, anonymous: httpx.Client
) -> None:
    old = make_key(admin, "developer")
    rotated = admin.post(f"/api/v1/keys/{old['id']}/rotate")
    assert rotated.status_code == 201
    new = rotated.json()
    assert new["key"] != old["key"]
    assert (new["role"], new["rotated_from_id"]) == ("developer", old["id"])
    deadline = time.monotonic() + 1.0
    while anonymous.get("/api/v1/departments", headers=bearer(old["key"])).status_code != 401:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert anonymous.get("/api/v1/departments", headers=bearer(new["key"])).status_code == 200


def test_rotation_with_grace_keeps_the_old_key_working_until_it_expires(
    admin: httpx.Client, anonymous: httpx.Client
) -> None:
    old = make_key(admin, "developer")
    assert (
        admin.post(f"/api/v1/keys/{old['id']}/rotate", json={"grace_seconds": 3600}).status_code
        == 201
    )
    time.sleep(0.5)
    assert anonymous.get("/api/v1/departments", headers=bearer(old["key"])).status_code == 200


def test_keys_are_never_listed_in_full(admin: httpx.Client) -> None:
    created = make_key(admin, "service")
    listed = admin.get("/api/v1/keys").json()["items"]
    assert created["key"] not in str(listed)
    assert {k["prefix"] for k in listed} >= {created["key"][:12]}
