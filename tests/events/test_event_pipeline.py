"""The request-event pipeline: every recorded event lands in the store exactly once, whether
the database is up, down for a while, or already holds some of them; `record` never fails
because of the database. Each test runs on a real SQLite file and a real PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import event as sa_event
from sqlalchemy.engine import make_url

from capstan.events import EventPipeline
from capstan.events import spool as spool_module
from capstan.events.store import insert_events
from capstan.store import Store, create_store
from capstan.store.schema.events import ERROR_MESSAGE
from tests.databases import sqlalchemy_url
from tests.events.eventdata import dead_spool, make_event, stored, stored_ids
from tests.tcp_proxy import TcpProxy

SHORT_BUSY_TIMEOUT_MS = 100


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = create_store(database_url)
    yield store
    store.dispose()


@dataclass
class Outage:
    """A store whose database the test can take away and give back."""

    store: Store
    down: Callable[[], None]
    up: Callable[[], None]


@pytest.fixture
def outage(database_url: str) -> Iterator[Outage]:
    """PostgreSQL is reached through a TCP proxy the test cuts; SQLite is held under an
    exclusive lock by another connection (with a short busy timeout, so writers give up fast)."""
    if database_url.startswith("sqlite"):
        store = create_store(database_url)
        sa_event.listen(
            store.engine,
            "connect",
            lambda conn, _: conn.execute(f"PRAGMA busy_timeout={SHORT_BUSY_TIMEOUT_MS}"),
        )
        locker = create_store(database_url).engine.raw_connection()
        yield Outage(
            store,
            down=lambda: locker.cursor().execute("BEGIN EXCLUSIVE"),
            up=lambda: locker.cursor().execute("COMMIT"),
        )
        locker.close()
        store.dispose()
        return
    url = make_url(database_url)
    with TcpProxy("127.0.0.1", url.port or 5432) as proxy:
        through = url.set(host="127.0.0.1", port=proxy.port)
        store = create_store(sqlalchemy_url(through.render_as_string(hide_password=False)))
        yield Outage(store, down=proxy.pause, up=proxy.resume)
        proxy.resume()
        store.dispose()


def run(scenario: Callable[[], Any]) -> Any:
    return asyncio.run(scenario())


def test_a_recorded_event_lands_in_the_store(store: Store, tmp_path: Path) -> None:
    event = make_event(tags={"feature": "search"}, error_type=None)

    async def scenario() -> bool:
        pipeline = EventPipeline(store, tmp_path / "spool")
        await pipeline.start()
        pipeline.record(event)
        flushed = await pipeline.flush()
        await pipeline.stop()
        return flushed

    assert run(scenario) is True
    [row] = stored(store)
    assert row.id == event["id"]
    assert row.created_at == event["created_at"]
    assert row.org_id == event["org_id"]
    assert row.project_id == event["project_id"]
    assert (row.route, row.model, row.status, row.stream) == (
        "chat.completions",
        "gpt-4o-mini",
        200,
        True,
    )
    assert (row.prompt_tokens, row.completion_tokens, row.latency_ms) == (1234, 567, 812.5)
    assert row.tags == {"feature": "search"}


def test_flush_returns_once_every_recorded_event_is_stored(store: Store, tmp_path: Path) -> None:
    events = [make_event() for _ in range(2500)]

    async def scenario() -> tuple[bool, int, int]:
        pipeline = EventPipeline(store, tmp_path / "spool", batch_size=1000)
        await pipeline.start()
        for event in events:
            pipeline.record(event)
        flushed = await pipeline.flush()
        counts = (pipeline.waiting, pipeline.inserted)
        await pipeline.stop()
        return flushed, *counts

    assert run(scenario) == (True, 0, 2500)
    assert sorted(stored_ids(store)) == sorted(e["id"] for e in events)


def test_inserting_the_same_events_twice_stores_them_once(store: Store) -> None:
    events = [make_event() for _ in range(3)]

    assert insert_events(store, events) == 3
    assert insert_events(store, [*events, make_event()]) == 1
    assert len(stored_ids(store)) == 4


def test_a_replayed_spool_does_not_duplicate(store: Store, tmp_path: Path) -> None:
    events = [make_event() for _ in range(5)]
    spool = tmp_path / "spool"
    insert_events(store, events)
    # As if a process died after inserting its segment but before deleting it.
    dead_spool(spool, "host-1-dead", b"".join(orjson.dumps(e) + b"\n" for e in events))

    async def scenario() -> tuple[bool, int, int]:
        pipeline = EventPipeline(store, spool)
        await pipeline.start()
        flushed = await pipeline.flush()
        await pipeline.stop()
        return flushed, pipeline.replayed, pipeline.inserted

    assert run(scenario) == (True, 5, 0)
    assert sorted(stored_ids(store)) == sorted(e["id"] for e in events)


def test_events_recorded_while_the_database_is_down_land_when_it_returns(
    outage: Outage, tmp_path: Path
) -> None:
    before, during = make_event(), [make_event() for _ in range(20)]

    async def scenario() -> tuple[int, bool, bool, int, int]:
        pipeline = EventPipeline(outage.store, tmp_path / "spool", flush_interval_s=0.05)
        await pipeline.start()
        pipeline.record(before)
        assert await pipeline.flush()
        outage.down()
        for event in during:
            pipeline.record(event)  # never blocks, never raises
        down_flush = await pipeline.flush(timeout_s=1.0)
        waiting = pipeline.waiting
        outage.up()
        up_flush = await pipeline.flush(timeout_s=20.0)
        await pipeline.stop()
        return waiting, down_flush, up_flush, pipeline.waiting, pipeline.dropped

    assert run(scenario) == (20, False, True, 0, 0)
    assert sorted(stored_ids(outage.store)) == sorted(e["id"] for e in [before, *during])


def test_events_left_at_stop_are_stored_by_the_next_start(outage: Outage, tmp_path: Path) -> None:
    events = [make_event() for _ in range(7)]
    spool = tmp_path / "spool"

    async def first_run() -> None:
        pipeline = EventPipeline(outage.store, spool)
        await pipeline.start()
        outage.down()
        for event in events:
            pipeline.record(event)
        await pipeline.stop(timeout_s=0.5)

    async def second_run() -> tuple[bool, int]:
        pipeline = EventPipeline(outage.store, spool)
        await pipeline.start()
        flushed = await pipeline.flush()
        await pipeline.stop()
        return flushed, pipeline.replayed

    run(first_run)
    outage.up()
    assert run(second_run) == (True, 7)
    assert sorted(stored_ids(outage.store)) == sorted(e["id"] for e in events)
    assert list(spool.iterdir()) == []


def test_an_error_message_longer_than_its_column_is_cut_to_fit(store: Store) -> None:
    event = make_event(status=502, error_type="upstream_error", error_message="x" * 5000)

    insert_events(store, [event])

    [row] = stored(store)
    assert row.error_message == "x" * ERROR_MESSAGE


def test_an_event_the_store_refuses_is_set_aside_and_the_others_land(
    store: Store, tmp_path: Path
) -> None:
    good = [make_event() for _ in range(3)]
    bad = make_event(route=None)  # NOT NULL: the database refuses it
    spool = tmp_path / "spool"

    async def scenario() -> tuple[bool, int, int, int]:
        pipeline = EventPipeline(store, spool)
        await pipeline.start()
        for event in [good[0], bad, *good[1:]]:
            pipeline.record(event)
        flushed = await pipeline.flush()
        await pipeline.stop()
        return flushed, pipeline.rejected, pipeline.waiting, pipeline.dropped

    assert run(scenario) == (True, 1, 0, 0)
    assert sorted(stored_ids(store)) == sorted(e["id"] for e in good)
    [kept] = (spool / "rejected").iterdir()
    assert [orjson.loads(line)["id"] for line in kept.read_bytes().splitlines()] == [str(bad["id"])]


class _FullDisk:
    """The `os` module as the spool sees it on a full disk: every write fails."""

    def __init__(self) -> None:
        self.full = True

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def write(self, fd: int, data: bytes) -> int:
        if self.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.write(fd, data)


def test_events_recorded_while_the_spool_cannot_be_written_still_land(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = [make_event() for _ in range(10)]
    disk = _FullDisk()

    async def scenario() -> tuple[bool, int, int]:
        pipeline = EventPipeline(store, tmp_path / "spool")
        await pipeline.start()
        monkeypatch.setattr(spool_module, "os", disk)
        for event in events[:5]:
            pipeline.record(event)
        disk.full = False
        for event in events[5:]:
            pipeline.record(event)
        flushed = await pipeline.flush()
        await pipeline.stop()
        return flushed, pipeline.waiting, pipeline.dropped

    assert run(scenario) == (True, 0, 0)
    assert sorted(stored_ids(store)) == sorted(e["id"] for e in events)
