"""The Alembic migrations build exactly the schema the SQLAlchemy models describe, on SQLite and
on PostgreSQL; they run forwards, backwards and again; and rows come back the same on both
databases (UUIDv7 ids, timezone-aware UTC timestamps)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select, text

from capstan.bootstrap import system_principal
from capstan.store import Store, create_store, migrate
from capstan.store.schema import Base, ConfigState
from tests.conftest import Capstan
from tests.databases import fresh_postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A store on a brand-new database that no migration has touched."""
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{tmp_path / 'fresh.db'}"])
    else:
        urls = fresh_postgres_database()
    url = next(urls)
    store = create_store(url)
    try:
        yield store
    finally:
        store.dispose()
        for _ in urls:  # runs the generator's cleanup (drops the PostgreSQL database)
            pass


def _schema_diff(store: Store) -> list[Any]:
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def _downgrade_to_base(store: Store) -> None:
    with store.engine.begin() as connection:
        config = migrate.alembic_config(store)
        config.attributes["connection"] = connection
        command.downgrade(config, "base")


def _tables(store: Store) -> set[str]:
    return set(inspect(store.engine).get_table_names()) - {"alembic_version"}


def test_the_migrated_schema_matches_the_models(empty_store: Store) -> None:
    migrate.upgrade(empty_store)

    assert _schema_diff(empty_store) == []


def test_an_empty_database_is_not_current(empty_store: Store) -> None:
    assert migrate.current_revision(empty_store) is None
    assert migrate.is_current(empty_store) is False


def test_an_upgraded_database_is_current(empty_store: Store) -> None:
    migrate.upgrade(empty_store)

    assert migrate.current_revision(empty_store) == migrate.head_revision(empty_store)
    assert migrate.is_current(empty_store) is True


def test_upgrading_twice_changes_nothing(empty_store: Store) -> None:
    migrate.upgrade(empty_store)
    revision = migrate.current_revision(empty_store)

    migrate.upgrade(empty_store)

    assert migrate.current_revision(empty_store) == revision
    assert _schema_diff(empty_store) == []
    with empty_store.read() as session:
        assert session.scalar(select(func.count()).select_from(ConfigState)) == 1


def test_downgrading_to_base_removes_every_table(empty_store: Store) -> None:
    migrate.upgrade(empty_store)

    _downgrade_to_base(empty_store)

    assert _tables(empty_store) == set()
    assert migrate.is_current(empty_store) is False


def test_upgrading_after_a_downgrade_rebuilds_the_schema(empty_store: Store) -> None:
    migrate.upgrade(empty_store)
    _downgrade_to_base(empty_store)

    migrate.upgrade(empty_store)

    assert migrate.is_current(empty_store) is True
    assert _schema_diff(empty_store) == []
    assert _tables(empty_store) == set(Base.metadata.tables)


def test_sqlite_runs_in_wal_mode_with_foreign_keys_on(tmp_path: Path) -> None:
    store = create_store(f"sqlite:///{tmp_path / 'capstan.db'}")
    try:
        with store.engine.connect() as connection:
            journal_mode = connection.execute(text("PRAGMA journal_mode")).scalar()
            foreign_keys = connection.execute(text("PRAGMA foreign_keys")).scalar()
    finally:
        store.dispose()

    assert journal_mode == "wal"
    assert foreign_keys == 1


def test_ids_are_uuid_v7(capstan: Capstan) -> None:
    directory = capstan.services.directory
    org = directory.organization()

    department = directory.create_department(system_principal(org), "uuid-check")

    assert org.id.version == 7
    assert department.id.version == 7
    stored = directory.list_departments(system_principal(org), None, 500)
    assert department.id in {d.id for d in stored}


def test_timestamps_come_back_timezone_aware_utc(capstan: Capstan) -> None:
    directory = capstan.services.directory
    org = directory.organization()
    directory.create_department(system_principal(org), "utc-check")

    [department] = [
        d
        for d in directory.list_departments(system_principal(org), None, 500)
        if d.name == "utc-check"
    ]

    for value in (org.created_at, department.created_at):
        assert value.tzinfo is not None
        assert value.utcoffset() == timedelta(0)
        assert abs(datetime.now(UTC) - value) < timedelta(minutes=5)


def test_timestamps_keep_microseconds(capstan: Capstan) -> None:
    directory = capstan.services.directory
    org = directory.organization()
    created = directory.create_department(system_principal(org), "precision-check")

    [stored] = [
        d
        for d in directory.list_departments(system_principal(org), None, 500)
        if d.id == created.id
    ]

    assert stored.created_at == created.created_at
