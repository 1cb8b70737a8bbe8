"""Small helpers for tests that talk to a running server with several keys."""

from __future__ import annotations

from typing import Any

import httpx


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def make_key(admin: httpx.Client, role: str, **scope: Any) -> dict[str, Any]:
    response = admin.post("/api/v1/keys", json={"role": role, **scope})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def make_tree(admin: httpx.Client) -> None:
    """retail → credit → loans, and claims → triage → intake."""
    for path, body in [
        ("/api/v1/departments", {"name": "retail"}),
        ("/api/v1/departments", {"name": "claims"}),
        ("/api/v1/teams", {"name": "credit", "department": "retail"}),
        ("/api/v1/teams", {"name": "triage", "department": "claims"}),
        ("/api/v1/projects", {"name": "loans", "team": "credit"}),
        ("/api/v1/projects", {"name": "intake", "team": "triage"}),
    ]:
        response = admin.post(path, json=body)
        assert response.status_code == 201, response.text
