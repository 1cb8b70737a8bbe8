"""Worker processes share one spool folder. Each owns a locked directory in it; the directory of
a process that died (even by SIGKILL) is adopted by a live one, which stores its events exactly
once; a live process's directory is never touched by another.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from capstan.events import EventPipeline
from capstan.store import Store, create_store
from tests.events.eventdata import dead_spool, make_event, stored_ids

REPO = Path(__file__).resolve().parents[2]
KILLED_AFTER = 50

# Records events one by one, printing each id once `record` has returned, then idles. Its
# batches of 20 rotate segments and insert some of them, so the kill finds a mix: segments
# stored, one perhaps half-way, and a last one never closed.
CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from capstan.events import EventPipeline
    from capstan.store import create_store
    from tests.events.eventdata import make_event

    async def main() -> None:
        pipeline = EventPipeline(
            create_store(sys.argv[1]), Path(sys.argv[2]), batch_size=20, flush_interval_s=3600
        )
        await pipeline.start()
        for _ in range(int(sys.argv[3])):
            event = make_event()
            pipeline.record(event)
            print(event["id"], flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = create_store(database_url)
    yield store
    store.dispose()


def _lines(*events: dict[str, object]) -> bytes:
    return b"".join(orjson.dumps(event) + b"\n" for event in events)


def test_a_process_killed_with_sigkill_loses_no_recorded_event(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, database_url, str(spool), str(KILLED_AFTER)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    printed = [uuid.UUID(child.stdout.readline().strip()) for _ in range(KILLED_AFTER)]
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)

    async def survivor() -> tuple[bool, int, int]:
        pipeline = EventPipeline(store, spool)
        await pipeline.start()
        flushed = await pipeline.flush()
        await pipeline.stop()
        return flushed, pipeline.dropped, pipeline.replayed

    flushed, dropped, replayed = asyncio.run(survivor())
    assert (flushed, dropped) == (True, 0)
    assert replayed >= KILLED_AFTER % 20  # at least the never-closed segment came from disk
    ids = stored_ids(store)
    assert len(ids) == KILLED_AFTER
    assert sorted(ids) == sorted(printed)
    assert list(spool.iterdir()) == []


def test_two_live_pipelines_never_adopt_each_other(store: Store, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    events = [make_event() for _ in range(5)]

    async def scenario() -> tuple[int, int, bool, bool]:
        # The first keeps its events in its active segment: nothing rotates on its own.
        first = EventPipeline(store, spool, flush_interval_s=3600)
        await first.start()
        for event in events:
            first.record(event)
        second = EventPipeline(store, spool, adopt_interval_s=0.05)
        await second.start()
        await asyncio.sleep(0.3)  # several periodic scans
        seen = (second.replayed, second.waiting)
        first_directory = first.spool_directory
        untouched = first_directory is not None and first_directory.is_dir()
        flushed = await first.flush()
        await second.stop()
        await first.stop()
        return *seen, untouched, flushed

    assert asyncio.run(scenario()) == (0, 0, True, True)
    assert sorted(stored_ids(store)) == sorted(e["id"] for e in events)


def test_a_dead_siblings_spool_is_adopted_by_a_running_pipeline(
    store: Store, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    events = [make_event() for _ in range(4)]

    async def scenario() -> tuple[int, int]:
        pipeline = EventPipeline(store, spool, adopt_interval_s=0.05)
        await pipeline.start()
        dead_spool(spool, "otherhost-4242-deadbeef", _lines(*events))
        for _ in range(200):
            if pipeline.replayed == len(events):
                break
            await asyncio.sleep(0.05)
        await pipeline.stop()
        return pipeline.replayed, pipeline.inserted

    assert asyncio.run(scenario()) == (4, 4)
    assert sorted(stored_ids(store)) == sorted(e["id"] for e in events)
    assert list(spool.iterdir()) == []


def test_a_torn_last_line_is_skipped_and_counted(store: Store, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    whole = [make_event(), make_event()]
    torn = _lines(make_event())[:100]  # the writer died inside its last write
    dead_spool(spool, "host-77-torn", _lines(*whole) + torn)

    async def scenario() -> tuple[bool, int, int, int]:
        pipeline = EventPipeline(store, spool)
        await pipeline.start()
        flushed = await pipeline.flush()
        await pipeline.stop()
        return flushed, pipeline.replayed, pipeline.corrupt_lines, pipeline.waiting

    assert asyncio.run(scenario()) == (True, 2, 1, 0)
    assert sorted(stored_ids(store)) == sorted(e["id"] for e in whole)


def test_a_pipeline_that_stored_everything_leaves_no_directory_behind(
    store: Store, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"

    async def scenario() -> list[Path]:
        pipeline = EventPipeline(store, spool)
        await pipeline.start()
        pipeline.record(make_event())
        await pipeline.flush()
        during = list(spool.iterdir())
        await pipeline.stop()
        return during

    assert len(asyncio.run(scenario())) == 1
    assert list(spool.iterdir()) == []
