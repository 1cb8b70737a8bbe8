"""The request-event pipeline: record on the hot path, land in the store in the background.

The spool is the queue. `record` serialises the event and appends it to this process's active
segment with one `os.write`; nothing else happens on the request path. A background task closes
the active segment every `flush_interval_s` (or every `batch_size` events), reads closed segments
back (from the page cache, in a thread), inserts them idempotently and deletes the files.
Why not an in-memory queue with the spool as a backup copy: memory would have to be bounded
during an outage anyway, which means reading back from disk; making disk the only path means
replay, adoption of a dead worker's spool and everyday operation are the same, always-exercised
code, and memory stays flat however long the database is away. The re-read costs a JSON parse
per event in a thread, small next to the insert itself.

Durability: a line is in the kernel once `record` returns, so a killed process loses nothing; a
background fsync every `fsync_interval_s` bounds what a machine crash can take. Delivery is at
least once (a crash between insert and delete replays a segment), and the primary key plus
`ON CONFLICT DO NOTHING` make it exactly once in the table. Events the database refuses (bad
data, not an outage) are isolated one by one and kept in `<spool>/rejected/`, never retried
forever and never silently thrown away. When the spool itself cannot be written (disk full),
events are held in memory up to `max_memory_events` and inserted directly; only beyond that are
they counted as dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from capstan.clock import utcnow
from capstan.events.batches import Inserter, Outcome, Unit, transient
from capstan.events.orphans import Orphan, find_orphans
from capstan.events.spool import OwnSpool, Segment, open_segment, sync_and_close
from capstan.events.store import ensure_partitions
from capstan.store.engine import Store

log = logging.getLogger(__name__)

BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0
PARTITION_CHECK_S = 6 * 3600.0
PARTITION_RETRY_S = 60.0
_dumps = orjson.dumps
_LINE = orjson.OPT_APPEND_NEWLINE


class EventPipeline:
    """Owns this process's spool directory, adopts dead siblings', and feeds the store."""

    def __init__(
        self,
        store: Store,
        spool_dir: Path,
        *,
        batch_size: int = 1000,
        flush_interval_s: float = 1.0,
        fsync_interval_s: float = 1.0,
        adopt_interval_s: float = 5.0,
        max_memory_events: int = 100_000,
    ) -> None:
        self._store = store
        self._root = spool_dir
        self._batch = batch_size
        self._flush_interval = flush_interval_s
        self._fsync_interval = fsync_interval_s
        self._adopt_interval = adopt_interval_s
        self._max_memory = max_memory_events
        self._spool: OwnSpool | None = None
        self._inserter: Inserter | None = None
        self._stopped = False
        self._memory: deque[dict[str, Any]] = deque()
        self._orphans: deque[Orphan] = deque()
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._spare_wanted = asyncio.Event()
        self._progress = asyncio.Condition()
        self._delay = 0.0
        # What flush() waits for: high-water marks of work queued and work done, per queue.
        self._own_done_seq = 0
        self._memory_in = self._memory_done = 0
        self._adopted_in = self._adopted_done = 0
        self._waiting = self._dropped = self._inserted = 0
        self._replayed = self._corrupt = self._rejected = 0
        # Inserts run on a thread of their own at idle priority, on CPU time nobody else wants,
        # so they never delay a request; once a backlog builds (a host saturated for long), a
        # normal-priority thread takes over until it is gone, so the spool stays bounded.
        self._idle_inserts = ThreadPoolExecutor(
            1, thread_name_prefix="capstan-events-idle", initializer=_idle_priority
        )
        self._urgent_inserts = ThreadPoolExecutor(1, thread_name_prefix="capstan-events")

    @property
    def waiting(self) -> int:
        """Recorded (or adopted from a dead sibling) and not yet in the store."""
        return self._waiting

    @property
    def dropped(self) -> int:
        """Neither spooled nor kept in memory: lost. Anything but 0 is an incident."""
        return self._dropped

    @property
    def inserted(self) -> int:
        """Rows this process added; replayed duplicates the store already had are not counted."""
        return self._inserted

    @property
    def replayed(self) -> int:
        """Events read back from spools this process adopted (dead siblings, earlier runs)."""
        return self._replayed

    @property
    def corrupt_lines(self) -> int:
        """Spool lines that were not events (a write torn by a crash); skipped."""
        return self._corrupt

    @property
    def rejected(self) -> int:
        """Events the store refused as invalid; kept in `<spool>/rejected/`, not retried."""
        return self._rejected

    @property
    def spool_directory(self) -> Path | None:
        return None if self._spool is None else self._spool.directory

    async def start(self) -> None:
        self._spool = spool = await asyncio.to_thread(OwnSpool.create, self._root)
        self._inserter = Inserter(self._store, self._root, spool.name, self._batch)
        await self._scan()
        self._spare_wanted.set()
        self._tasks = [
            asyncio.create_task(self._insert_loop(), name="events-insert"),
            asyncio.create_task(self._every(self._fsync_interval, self._sync), name="events-fsync"),
            asyncio.create_task(self._every(self._adopt_interval, self._scan), name="events-adopt"),
            asyncio.create_task(self._spares(), name="events-spare"),
        ]

    def record(self, event: dict[str, Any]) -> None:
        spool = self._spool
        if spool is not None:
            try:
                line = _dumps(event, default=str, option=_LINE)
            except TypeError:  # e.g. non-string dict keys: keep it, the insert will say more
                line = b""
            if line and spool.append(line):
                self._waiting += 1
                if spool.lines >= self._batch:
                    self._rotate()
                return
        self._keep_in_memory(event)

    def _keep_in_memory(self, event: dict[str, Any]) -> None:
        if self._stopped or len(self._memory) >= self._max_memory:
            self._dropped += 1
            if self._dropped % 10_000 == 1:
                log.error("request events dropped: %d so far", self._dropped)
            return
        self._memory.append(dict(event))
        self._memory_in += 1
        self._waiting += 1

    def _rotate(self) -> None:
        if self._spool is not None and self._spool.rotate() is not None:
            self._spare_wanted.set()
            if not self._delay:
                self._wake.set()

    async def flush(self, timeout_s: float = 10.0) -> bool:
        spool = self._spool
        if spool is None:
            return not self._waiting
        self._rotate()
        own = spool.closed[-1].seq if spool.closed else self._own_done_seq
        memory, adopted = self._memory_in, self._adopted_in

        def done() -> bool:
            return (
                self._own_done_seq >= own
                and self._memory_done >= memory
                and self._adopted_done >= adopted
            )

        self._wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s), self._progress:
                await self._progress.wait_for(done)
        return done()

    async def stop(self, timeout_s: float = 5.0) -> None:
        spool = self._spool
        if spool is None:
            return
        await self.flush(timeout_s)
        self._stopped = True
        self._spool = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        memory, orphans = list(self._memory), list(self._orphans)
        self._memory.clear()
        self._orphans.clear()
        self._dropped += await asyncio.to_thread(_close, spool, memory, orphans)
        self._idle_inserts.shutdown(wait=False)
        self._urgent_inserts.shutdown(wait=False)

    async def _every(self, interval_s: float, job: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await job()
            except Exception:
                log.exception("event pipeline housekeeping failed; trying again later")

    async def _sync(self) -> None:
        if self._spool is not None:
            fds, _ = self._spool.take_sync_work()
            if fds:
                await asyncio.to_thread(sync_and_close, fds)

    async def _scan(self) -> None:
        spool = self._spool
        if spool is None:
            return
        held = {orphan.directory.name for orphan in self._orphans}
        found = await asyncio.to_thread(find_orphans, self._root, spool.name, held)
        for orphan in found:
            lines = orphan.lines
            log.info("adopting %d spooled event(s) from %s", lines, orphan.directory)
            self._orphans.append(orphan)
            self._waiting += lines
            self._adopted_in += lines
        if found:
            self._wake.set()

    async def _insert_loop(self) -> None:
        next_partition_check = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._delay or self._flush_interval)
            self._wake.clear()
            spool = self._spool
            if spool is None:
                return
            if spool.lines and time.monotonic() - spool.opened_at >= max(
                self._flush_interval, self._delay
            ):
                self._rotate()
            spool.reopen()
            if time.monotonic() >= next_partition_check and not self._delay:
                next_partition_check = time.monotonic() + await self._ensure_partitions()
            try:
                await self._drain()
            except Exception as exc:
                if not transient(exc):
                    log.exception("storing request events failed; retrying")
                elif not self._delay:
                    log.warning("the store is unavailable; request events wait in the spool")
                self._delay = min(max(self._delay * 2, BACKOFF_MIN_S), BACKOFF_MAX_S)
            else:
                if self._delay:
                    log.info("the store is back; spooled request events are landing")
                self._delay = 0.0

    async def _spares(self) -> None:
        """Create the next segment file in a thread as soon as a rotation used the last one:
        creating a file costs ~0.1-0.2 ms on ext4, too much for the request path."""
        while True:
            await self._spare_wanted.wait()
            self._spare_wanted.clear()
            spool = self._spool
            path = None if spool is None else spool.reserve_spare()
            if spool is None or path is None:
                continue
            fd = None
            try:
                fd = await asyncio.to_thread(open_segment, path)
            except OSError as exc:
                log.warning("cannot create a spare spool segment %s: %s", path, exc)
            finally:
                spool.set_spare(path, fd)

    async def _ensure_partitions(self) -> float:
        """Months ahead get their partition long before they start; returns when to look again.
        Not fatal when it fails: the DEFAULT partition takes the rows meanwhile."""
        try:
            await asyncio.to_thread(ensure_partitions, self._store, utcnow())
        except Exception as exc:
            log.warning("could not create request event partitions ahead of time: %s", exc)
            return PARTITION_RETRY_S
        return PARTITION_CHECK_S

    async def _drain(self) -> None:
        inserter = self._inserter
        while inserter is not None and (unit := self._next_unit()) is not None:
            loop = asyncio.get_running_loop()
            urgent = self._waiting > URGENT_BACKLOG_EVENTS
            threads = self._urgent_inserts if urgent else self._idle_inserts
            outcome = await loop.run_in_executor(threads, inserter.process, unit)
            self._account(unit, outcome)
            async with self._progress:
                self._progress.notify_all()

    def _next_unit(self) -> Unit | None:
        if self._memory:
            return Unit("memory", events=list(itertools.islice(self._memory, self._batch)))
        if self._spool is not None and self._spool.closed:
            return Unit("own", segments=self._take(self._spool.closed))
        if self._orphans:
            orphan = self._orphans[0]
            segments = self._take(orphan.segments)
            finishes = len(segments) == len(orphan.segments)
            return Unit("orphan", segments=segments, orphan=orphan, finishes_orphan=finishes)
        return None

    def _take(self, queue: deque[Segment]) -> list[Segment]:
        """Segments from the head of `queue`, as many as fit in a batch (at least one)."""
        taken: list[Segment] = []
        lines = 0
        for segment in queue:
            if taken and lines + segment.lines > self._batch:
                break
            taken.append(segment)
            lines += segment.lines
        return taken

    def _account(self, unit: Unit, outcome: Outcome) -> None:
        count = unit.count
        if unit.source == "memory":
            for _ in range(count):
                self._memory.popleft()
            self._memory_done += count
        elif unit.source == "own" and self._spool is not None:
            for _ in unit.segments:
                self._spool.closed.popleft()
            self._own_done_seq = unit.segments[-1].seq
        elif unit.orphan is not None:
            for _ in unit.segments:
                unit.orphan.segments.popleft()
            if unit.finishes_orphan:
                self._orphans.popleft()
            self._adopted_done += count
            self._replayed += outcome.events
        self._waiting -= count
        self._inserted += outcome.new
        self._corrupt += outcome.corrupt
        self._rejected += outcome.rejected
        self._dropped += outcome.lost


# Beyond this many events waiting, inserts stop yielding to everything else.
URGENT_BACKLOG_EVENTS = 20_000
BACKGROUND_NICENESS = 19


def _idle_priority() -> None:
    """Linux schedules each thread on its own: SCHED_IDLE runs it only when a CPU would be
    idle otherwise (measured: the c1 p99 added by the gateway fell from 2.2 ms to under 1 ms
    on two cores). Where that policy is missing, the lowest nice value; elsewhere nothing."""
    tid = threading.get_native_id()
    try:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, tid, BACKGROUND_NICENESS)


def _close(spool: OwnSpool, memory: list[dict[str, Any]], orphans: list[Orphan]) -> int:
    """At stop, in a thread: spool what only memory held, close up; returns events lost."""
    lost = 0
    for event in memory:
        try:
            line = _dumps(event, default=str, option=_LINE)
        except TypeError:
            line = b""
        if not (line and spool.reopen(force=True) and spool.append(line)):
            lost += 1
    if lost:
        log.error("%d request event(s) could not be spooled at shutdown and are lost", lost)
    spool.close()
    for orphan in orphans:
        orphan.release()
    return lost
