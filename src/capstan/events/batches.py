"""One insert's worth of spooled work, and how it reaches the store (in a worker thread).

A unit is taken from the head of a queue without being removed; the pipeline removes it only
after `process` returns. If the store goes down halfway, `process` raises before deleting
anything, and the whole unit is simply tried again: the inserts that did land are skipped then.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.exc import TimeoutError as PoolTimeout

from capstan.errors import StoreUnavailable
from capstan.events.orphans import Orphan
from capstan.events.spool import (
    Segment,
    count_lines,
    read_bytes,
    read_segment,
    remove_segments,
    write_rejected,
)
from capstan.events.store import insert_events, insert_segments
from capstan.store.engine import Store, is_unavailable

log = logging.getLogger(__name__)


def transient(exc: BaseException) -> bool:
    """The database is away (retry later), as opposed to refusing the data (retrying is futile)."""
    return isinstance(exc, StoreUnavailable | PoolTimeout) or is_unavailable(exc)


@dataclass
class Unit:
    source: str  # "memory", "own" or "orphan"
    events: list[dict[str, Any]] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    orphan: Orphan | None = None
    finishes_orphan: bool = False

    @property
    def count(self) -> int:
        """What the unit weighs in `waiting`: events for memory, spooled lines for segments."""
        return len(self.events) if self.source == "memory" else sum(s.lines for s in self.segments)


@dataclass
class Outcome:
    events: int = 0
    new: int = 0
    corrupt: int = 0
    rejected: int = 0
    lost: int = 0


@dataclass
class Inserter:
    store: Store
    root: Path
    dead_letters: str  # file name under <root>/rejected/
    batch_size: int

    def process(self, unit: Unit) -> Outcome:
        """Read, insert, then delete. Raises while the store is down, with nothing deleted."""
        outcome = self._process_raw(unit)
        if outcome is None:
            outcome = self._process_events(unit)
        remove_segments(unit.segments)
        if unit.finishes_orphan and unit.orphan is not None:
            unit.orphan.finish()
        return outcome

    def _process_raw(self, unit: Unit) -> Outcome | None:
        """SQLite's fast path: the spool's files go to the database as they are and SQLite
        unpacks them, so this thread holds the GIL (which the request path needs) only to read
        the files: each C call that holds it, however short, delays every request waiting
        for it (measured: the c1 p99 under load). None when the database refuses the batch (a
        torn or bad line, a value it cannot store): the careful path then reads event by
        event."""
        if unit.source == "memory" or self.store.dialect != "sqlite":
            return None
        contents = [read_bytes(segment.path) for segment in unit.segments]
        try:
            new = insert_segments(self.store, contents)
        except Exception:  # SQLite reports bad JSON as an OperationalError, like an outage:
            return None  # the careful path tells the two apart
        return Outcome(events=sum(map(count_lines, contents)), new=new)

    def _process_events(self, unit: Unit) -> Outcome:
        outcome = Outcome()
        events = unit.events
        if unit.source != "memory":
            events = []
            for segment in unit.segments:
                read, corrupt = read_segment(segment.path)
                events.extend(read)
                outcome.corrupt += corrupt
        outcome.events = len(events)
        refused: list[dict[str, Any]] = []
        for start in range(0, len(events), self.batch_size):
            new, bad = self._insert_isolating(events[start : start + self.batch_size])
            outcome.new += new
            refused.extend(bad)
        if refused:
            outcome.rejected = len(refused)
            try:
                write_rejected(self.root, self.dead_letters, refused)
            except OSError:
                log.exception("could not keep %d refused request event(s)", len(refused))
                outcome.lost = len(refused)
        return outcome

    def _insert_isolating(self, events: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
        """Insert a batch; if the database refuses it (not an outage), find the culprits one
        event at a time so that the rest still land and the queue never jams on bad data."""
        try:
            return insert_events(self.store, events), []
        except Exception as exc:
            if transient(exc):
                raise
            log.warning("the store refused a batch of request events (%s); isolating", exc)
        new = 0
        refused: list[dict[str, Any]] = []
        for event in events:
            try:
                new += insert_events(self.store, [event])
            except Exception as exc:
                if transient(exc):
                    raise
                log.error("request event %s refused by the store: %s", event.get("id"), exc)
                refused.append(event)
        return new, refused
