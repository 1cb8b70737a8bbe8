"""On PostgreSQL request events are partitioned by month: each month's rows land in that month's
partition, partitions are created ahead of time idempotently, and a row with no partition for
its month still lands (in the DEFAULT partition) instead of failing the insert."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from capstan.clock import utcnow
from capstan.events.store import PARTITION_SCHEMA, ensure_partitions, insert_events
from capstan.store import Store, create_store
from tests.databases import PostgresTemplate, SqliteTemplate
from tests.events.eventdata import as_of, stored_ids


@pytest.fixture
def pg_store(postgres_template: PostgresTemplate) -> Iterator[Store]:
    name, url = postgres_template.clone()
    store = create_store(url)
    yield store
    store.dispose()
    postgres_template.drop(name)


def _partition_of(store: Store) -> dict[str, str]:
    """Each stored event's id -> the partition holding it."""
    with store.read() as session:
        rows = session.execute(
            text("SELECT id::text, tableoid::regclass::text FROM request_events")
        )
        return {row[0]: row[1] for row in rows}


def _partitions(store: Store) -> set[str]:
    with store.read() as session:
        rows = session.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'request_events'::regclass"
            )
        )
        return {row[0] for row in rows}


@pytest.mark.postgres
def test_events_from_two_months_land_in_two_partitions(pg_store: Store) -> None:
    now = utcnow()
    this_month, next_month = as_of(now), as_of(now + timedelta(days=32))

    insert_events(pg_store, [this_month, next_month])

    placed = _partition_of(pg_store)
    assert placed[str(this_month["id"])] == f"{PARTITION_SCHEMA}.request_events_{now:%Y_%m}"
    later = now + timedelta(days=32)
    assert placed[str(next_month["id"])] == f"{PARTITION_SCHEMA}.request_events_{later:%Y_%m}"


@pytest.mark.postgres
def test_an_event_from_a_month_without_a_partition_still_lands(pg_store: Store) -> None:
    old = as_of(datetime(2001, 1, 1, tzinfo=UTC))

    assert insert_events(pg_store, [old]) == 1

    assert _partition_of(pg_store)[str(old["id"])] == f"{PARTITION_SCHEMA}.request_events_default"


@pytest.mark.postgres
def test_ensure_partitions_creates_the_months_ahead_once(pg_store: Store) -> None:
    moment = datetime(2031, 11, 15, tzinfo=UTC)

    first = ensure_partitions(pg_store, moment)
    second = ensure_partitions(pg_store, moment)

    assert first == ["request_events_2031_11", "request_events_2031_12", "request_events_2032_01"]
    assert second == []
    assert set(first) <= _partitions(pg_store)
    event = as_of(datetime(2031, 12, 24, tzinfo=UTC))
    insert_events(pg_store, [event])
    assert _partition_of(pg_store)[str(event["id"])].endswith("request_events_2031_12")


@pytest.mark.postgres
def test_a_month_whose_rows_wait_in_the_default_partition_is_skipped(
    pg_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    stranded = as_of(datetime(2033, 5, 10, tzinfo=UTC))
    insert_events(pg_store, [stranded])

    with caplog.at_level(logging.WARNING, logger="capstan.events.store"):
        created = ensure_partitions(pg_store, datetime(2033, 5, 1, tzinfo=UTC))

    assert created == ["request_events_2033_06", "request_events_2033_07"]
    assert "request_events_2033_05" in caplog.text
    assert stored_ids(pg_store) == [stranded["id"]]


def test_ensure_partitions_does_nothing_on_sqlite(
    tmp_path: Path, sqlite_template: SqliteTemplate
) -> None:
    store = create_store(sqlite_template.clone(tmp_path / "capstan.db"))
    try:
        assert ensure_partitions(store, utcnow()) == []
    finally:
        store.dispose()
