"""Real databases for tests: a fresh SQLite file or a fresh PostgreSQL database per test.

Each is cloned from a template migrated once per worker (a file copy for SQLite,
`CREATE DATABASE … TEMPLATE` for PostgreSQL), so every test starts on the real schema quickly.
With CI=true a missing PostgreSQL or Redis fails the run; elsewhere those tests skip, saying why.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from capstan.store import create_store, migrate

PG_ADMIN_DSN = os.environ.get("CAPSTAN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CAPSTAN_TEST_REDIS", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() == "true"


def sqlalchemy_url(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+psycopg://", 1)


def _missing(service: str, error: Exception) -> None:
    message = f"{service} is not reachable ({error})"
    if IN_CI:
        pytest.fail(f"{message}; CI=true requires it", pytrace=False)
    pytest.skip(f"{message}; set CI=true to make this a failure")


def pg_connect(dbname: str | None = None) -> psycopg.Connection[tuple[object, ...]]:
    dsn = PG_ADMIN_DSN if dbname is None else PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + dbname
    return psycopg.connect(dsn, autocommit=True, connect_timeout=3)


def require_postgres() -> None:
    try:
        with pg_connect() as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        _missing("PostgreSQL at " + PG_ADMIN_DSN, exc)


def require_redis() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        _missing("Redis at " + REDIS_URL, exc)
    return REDIS_URL


class SqliteTemplate:
    def __init__(self, folder: Path) -> None:
        self.path = folder / "template.db"
        store = create_store(f"sqlite:///{self.path}")
        migrate.upgrade(store)
        store.dispose()

    def clone(self, target: Path) -> str:
        shutil.copyfile(self.path, target)
        return f"sqlite:///{target}"


class PostgresTemplate:
    def __init__(self, worker: str) -> None:
        self.name = f"capstan_tmpl_{worker}_{uuid.uuid4().hex[:8]}"
        with pg_connect() as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        store = create_store(sqlalchemy_url(self._dsn(self.name)))
        migrate.upgrade(store)
        store.dispose()
        self.created: list[str] = []

    @staticmethod
    def _dsn(name: str) -> str:
        return PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + name

    def clone(self) -> tuple[str, str]:
        name = f"capstan_t_{uuid.uuid4().hex[:16]}"
        with pg_connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.name}"')
        return name, sqlalchemy_url(self._dsn(name))

    @staticmethod
    def drop(name: str) -> None:
        with pg_connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        self.drop(self.name)


def fresh_postgres_database() -> Iterator[str]:
    """A brand-new, empty PostgreSQL database (for migration tests)."""
    require_postgres()
    name = f"capstan_e_{uuid.uuid4().hex[:16]}"
    with pg_connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield sqlalchemy_url(PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + name)
    finally:
        PostgresTemplate.drop(name)
