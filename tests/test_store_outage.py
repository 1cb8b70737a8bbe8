"""A database that goes down makes /readyz fail and API writes return 503 (never 500); the
process stays up and recovers by itself when the database comes back.

The outage is real: the server reaches PostgreSQL through a loopback TCP proxy that the test
cuts (open connections killed, new ones refused) and restores.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from capstan.bootstrap import initialize
from capstan.config import Settings
from capstan.services import Services
from tests.conftest import TEST_MASTER_KEY
from tests.databases import PostgresTemplate, require_postgres
from tests.servers import RunningServer, start_server
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres

PROBLEM_JSON = "application/problem+json"
RECOVERY_SECONDS = 10.0


@dataclass
class Outage:
    """A running Capstan whose only way to its database is `proxy`."""

    proxy: TcpProxy
    server: RunningServer
    admin: httpx.Client
    anonymous: httpx.Client


def _through(proxy: TcpProxy, url: str) -> str:
    parsed = make_url(url)
    return parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


def _unique_name() -> str:
    return f"dept-{uuid.uuid4().hex[:12]}"


def _eventually(check: Callable[[], httpx.Response], status: int) -> httpx.Response:
    """Poll `check` until it answers `status`; the last response either way."""
    deadline = time.monotonic() + RECOVERY_SECONDS
    while True:
        response = check()
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


@pytest.fixture
def outage(tmp_path: Path, postgres_template: PostgresTemplate) -> Iterator[Outage]:
    require_postgres()
    name, url = postgres_template.clone()
    try:
        with TcpProxy("127.0.0.1", make_url(url).port or 5432) as proxy:
            settings = Settings(
                home=tmp_path / "home",
                database_url=_through(proxy, url),
                master_key=TEST_MASTER_KEY,
            )
            services = Services.build(settings)
            try:
                issued = initialize(services).admin_key
            finally:
                services.close()
            assert issued is not None
            server = start_server(settings)
            headers = {"Authorization": f"Bearer {issued.plaintext}"}
            try:
                with (
                    httpx.Client(base_url=server.url, headers=headers, timeout=15) as admin,
                    httpx.Client(base_url=server.url, timeout=15) as anonymous,
                ):
                    # Authenticate once while the database is up, so the key is in the cache.
                    assert admin.get("/api/v1/departments").status_code == 200
                    yield Outage(proxy, server, admin, anonymous)
            finally:
                proxy.resume()  # let the server's shutdown find its database
                server.stop()
    finally:
        postgres_template.drop(name)


def test_readyz_fails_while_the_database_is_down(outage: Outage) -> None:
    assert outage.anonymous.get("/readyz").status_code == 200

    outage.proxy.pause()
    response = outage.anonymous.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert "unavailable" in body["checks"]["database"]


def test_healthz_stays_up_while_the_database_is_down(outage: Outage) -> None:
    outage.proxy.pause()

    response = outage.anonymous.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_a_write_while_the_database_is_down_is_a_503_problem(outage: Outage) -> None:
    outage.proxy.pause()

    response = outage.admin.post("/api/v1/departments", json={"name": _unique_name()})

    assert response.status_code == 503
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    problem = response.json()
    assert problem["type"] == "urn:capstan:problem:store-unavailable"
    assert problem["status"] == 503


def test_a_read_while_the_database_is_down_is_a_503_problem(outage: Outage) -> None:
    outage.proxy.pause()

    response = outage.admin.get("/api/v1/departments")

    assert response.status_code == 503
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert response.json()["type"] == "urn:capstan:problem:store-unavailable"


def test_the_process_recovers_by_itself_when_the_database_returns(outage: Outage) -> None:
    outage.proxy.pause()
    assert outage.anonymous.get("/readyz").status_code == 503
    assert outage.admin.post("/api/v1/departments", json={"name": _unique_name()}).status_code == (
        503
    )

    outage.proxy.resume()

    ready = _eventually(lambda: outage.anonymous.get("/readyz"), 200)
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert (checks["database"], checks["migrations"]) == ("ok", "current")
    name = _unique_name()
    created = outage.admin.post("/api/v1/departments", json={"name": name})
    assert created.status_code == 201, created.text
    listed = outage.admin.get("/api/v1/departments", params={"limit": 500}).json()["items"]
    assert name in {d["name"] for d in listed}
    verified = outage.admin.get("/api/v1/audit/verify")
    assert verified.status_code == 200
    assert verified.json()["ok"] is True


def test_repeated_outages_never_turn_into_500s(outage: Outage) -> None:
    for _ in range(3):
        outage.proxy.pause()
        down = outage.admin.post("/api/v1/departments", json={"name": _unique_name()})
        assert down.status_code == 503, down.text
        outage.proxy.resume()
        up = _eventually(
            lambda: outage.admin.post("/api/v1/departments", json={"name": _unique_name()}), 201
        )
        assert up.status_code == 201, up.text
