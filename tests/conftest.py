"""Fixtures: real SQLite and PostgreSQL databases, initialised Capstan homes, real servers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from capstan.bootstrap import initialize
from capstan.config import Settings
from capstan.services import Services
from tests.databases import PostgresTemplate, SqliteTemplate, require_postgres
from tests.servers import RunningServer, start_server

TEST_MASTER_KEY = "dGVzdC1tYXN0ZXIta2V5LTMyLWJ5dGVzLWxvbmctISE="  # base64 of 32 test bytes
pytest_plugins = ["tests.simulator_fixtures"]  # the upstream simulator and SDK clients on it


@pytest.fixture(autouse=True)
def _clean_capstan_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never inherit a developer's CAPSTAN_* settings."""
    for name in list(os.environ):
        if name.startswith("CAPSTAN_") and not name.startswith("CAPSTAN_TEST_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplate:
    return SqliteTemplate(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[PostgresTemplate]:
    require_postgres()
    # Named per xdist worker ("gw0", …), or "main" when pytest runs without xdist.
    template = PostgresTemplate(os.environ.get("PYTEST_XDIST_WORKER", "main"))
    yield template
    template.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test on a fresh SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        template: SqliteTemplate = request.getfixturevalue("sqlite_template")
        yield template.clone(tmp_path / "capstan.db")
        return
    pg: PostgresTemplate = request.getfixturevalue("postgres_template")
    name, url = pg.clone()
    try:
        yield url
    finally:
        pg.drop(name)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(home=tmp_path / "home", database_url=database_url, master_key=TEST_MASTER_KEY)


@dataclass
class Capstan:
    """An initialised installation: its services and the bootstrap admin key."""

    services: Services
    admin_key: str

    @property
    def settings(self) -> Settings:
        return self.services.settings


@pytest.fixture
def capstan(settings: Settings) -> Iterator[Capstan]:
    services = Services.build(settings)
    result = initialize(services)
    assert result.admin_key is not None
    yield Capstan(services, result.admin_key.plaintext)
    services.close()


@pytest.fixture
def server(capstan: Capstan) -> Iterator[RunningServer]:
    running = start_server(capstan.settings)
    yield running
    running.stop()


@pytest.fixture
def admin(server: RunningServer, capstan: Capstan) -> Iterator[httpx.Client]:
    """An HTTP client holding the bootstrap admin key."""
    headers = {"Authorization": f"Bearer {capstan.admin_key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture
def anonymous(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client
