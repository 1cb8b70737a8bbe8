"""Writing request events to the SQL store: idempotent batch inserts and monthly partitions.

Events reach this module either as the dicts the gateway built (UUIDs, datetimes) or as the same
dicts read back from the spool, where orjson turned UUIDs and datetimes into strings; both are
normalised to what the column types expect. Inserts use `ON CONFLICT DO NOTHING` on the primary
key (id, created_at), so replaying a spool segment that already landed changes nothing: that is
what makes at-least-once delivery from the spool exactly-once in the table.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, cast

import orjson
from sqlalchemy import Result, String, Table, Uuid, text

from capstan.clock import as_utc
from capstan.store.engine import Store
from capstan.store.schema.events import RequestEvent
from capstan.store.types import UTCDateTime

log = logging.getLogger(__name__)

PARTITION_SCHEMA = "request_event_partitions"
DEFAULT_PARTITION = "request_events_default"
# Any fixed 64-bit key: only `ensure_partitions` callers contend for it.
_PARTITION_LOCK_KEY = 0x43415053_54414E01

_TABLE = cast(Table, RequestEvent.__table__)
_COLUMNS: tuple[str, ...] = tuple(column.name for column in _TABLE.columns)
_UUIDS = frozenset(c.name for c in _TABLE.columns if isinstance(c.type, Uuid))
_TIMES = frozenset(c.name for c in _TABLE.columns if isinstance(c.type, UTCDateTime))
_LENGTHS: Mapping[str, int] = MappingProxyType(
    {
        c.name: c.type.length
        for c in _TABLE.columns
        if isinstance(c.type, String) and c.type.length is not None
    }
)
# Non-null columns the gateway may leave out; a factory so no row shares a mutable default.
_DEFAULTS: Mapping[str, Callable[[], Any]] = MappingProxyType(
    {"stream": lambda: False, "attempts": lambda: 0, "cost_estimated": lambda: False, "tags": dict}
)


def normalise(event: Mapping[str, Any]) -> dict[str, Any]:
    """One insertable row: every column present (executemany needs identical keys), UUIDs and
    datetimes parsed back from JSON text, strings cut to their column's length (PostgreSQL
    rejects longer ones, and one long upstream error message must not sink a batch) and
    cleared of NUL characters (PostgreSQL text cannot hold them). Unknown keys are ignored.

    Raises ValueError or TypeError for a value that cannot be converted.
    """
    row: dict[str, Any] = {}
    for name in _COLUMNS:
        value = event.get(name)
        if value is None:
            default = _DEFAULTS.get(name)
            row[name] = None if default is None else default()
            continue
        if name in _UUIDS:
            if not isinstance(value, uuid.UUID):
                value = uuid.UUID(value)
        elif name in _TIMES:
            # Aware UTC: PostgreSQL would read a naive time in the session's zone.
            value = as_utc(value if isinstance(value, datetime) else datetime.fromisoformat(value))
        elif name in _LENGTHS and isinstance(value, str):
            if "\x00" in value:
                value = value.replace("\x00", "")
            value = value[: _LENGTHS[name]]
        row[name] = value
    return row


def _sqlite_value(name: str) -> str:
    """SQL that turns one field of a `json_each` element into what SQLAlchemy stores on SQLite:
    UUIDs as 32 hex digits, times as naive UTC text with microseconds (SQLite's date functions
    apply the zone offset), strings cut to the column's length, JSON objects as JSON text."""
    field = f"json_extract(value, '$.{name}')"
    if name in _UUIDS:
        return f"replace({field}, '-', '')"
    if name in _TIMES:
        return (
            f"strftime('%Y-%m-%d %H:%M:%S', {field}) || CASE WHEN substr({field}, 20, 1) = '.' "
            f"THEN substr({field} || '000000', 20, 7) ELSE '.000000' END"
        )
    if name in _LENGTHS:
        return f"substr({field}, 1, {_LENGTHS[name]})"
    if name == "tags":
        return f"coalesce({field}, '{{}}')"
    if name in _DEFAULTS:  # the booleans and counts an older spooled event may lack
        return f"coalesce({field}, 0)"
    return field


# The batch travels as one JSON array that SQLite unpacks itself (json_each): the inserter
# thread then spends its time inside SQLite, which releases the GIL, instead of in Python
# building 25 bound parameters per row, which would hold it against the event loop.
# The row count is of the rows that were new, so counts exclude replayed duplicates (and no
# row comes back to Python to be counted).
_SQLITE_INSERT_FROM = (
    f"INSERT INTO request_events ({', '.join(_COLUMNS)}) "  # noqa: S608 - model's columns
    f"SELECT {', '.join(_sqlite_value(c) for c in _COLUMNS)} FROM json_each"
)
_SQLITE_INSERT = text(f"{_SQLITE_INSERT_FROM}(:rows) WHERE true ON CONFLICT DO NOTHING")
# A spool segment as it lies on disk (one event's JSON per line) becomes that array inside
# SQLite too: newlines to commas, brackets around. Python only hands the file's bytes over.
_SQLITE_INSERT_SEGMENT = text(
    f"{_SQLITE_INSERT_FROM}"
    "('[' || rtrim(replace(CAST(:segment AS TEXT), char(10), ','), ',') || ']') "
    "WHERE true ON CONFLICT DO NOTHING"
)
# On PostgreSQL the whole batch travels as one JSON document and the server unpacks it: several
# times faster than a 25-column multi-row VALUES, and far less Python work in the gateway
# process, where the inserter thread competes with the event loop for the GIL.
_NAMES = ", ".join(_COLUMNS)
_POSTGRESQL_INSERT = text(
    f"INSERT INTO request_events ({_NAMES}) SELECT {_NAMES} "  # noqa: S608 - model's columns
    "FROM json_populate_recordset(NULL::request_events, CAST(:rows AS json)) "
    "ON CONFLICT DO NOTHING"
)


def insert_events(store: Store, events: list[dict[str, Any]]) -> int:
    """Insert `events` in one transaction; returns how many were new (duplicates are skipped).

    Raises StoreUnavailable while the database is down, ValueError/TypeError for an event that
    cannot be converted, and the driver's error for one the database refuses.
    """
    if not events:
        return 0
    with store.write() as session:
        if store.dialect == "postgresql":
            document = orjson.dumps([normalise(event) for event in events]).decode()
            return _inserted(session.execute(_POSTGRESQL_INSERT, {"rows": document}))
        for event in events:  # what SQL cannot check: a time it would misread
            _check_sqlite_event(event)
        document = orjson.dumps(events).decode()
        return _inserted(session.execute(_SQLITE_INSERT, {"rows": document}))


def insert_segments(store: Store, segments: list[bytes]) -> int:
    """SQLite: insert spool segments, each the bytes of a file of JSON lines, without reading
    them in Python (which would hold the GIL, and so the event loop, for a millisecond per
    thousand events). The gateway writes `created_at` in UTC, which is all
    `_check_sqlite_event` would check; a line SQLite cannot read fails the whole call, and the
    caller takes the careful path."""
    new = 0
    with store.write() as session:
        for segment in segments:
            if segment:
                new += _inserted(session.execute(_SQLITE_INSERT_SEGMENT, {"segment": segment}))
    return new


def _inserted(result: Result[Any]) -> int:
    count: int = getattr(result, "rowcount", 0)
    return count


def _check_sqlite_event(event: Mapping[str, Any]) -> None:
    """Refuse, like `normalise` would, an event SQLite's JSON functions would store wrongly."""
    for name in _TIMES:
        value = event.get(name)
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError(f"{name}: a naive datetime")
        elif not isinstance(value, str) or (value[-6:-5] not in ("+", "-") and value[-1] != "Z"):
            raise ValueError(f"{name}: not an ISO time with a zone: {value!r}")


def _month_start(year: int, month: int) -> datetime:
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    return datetime(year, month, 1, tzinfo=UTC)


def partition_name(moment: datetime) -> str:
    return f"request_events_{moment.astimezone(UTC):%Y_%m}"


def ensure_partitions(store: Store, now: datetime, months_ahead: int = 2) -> list[str]:
    """Create the monthly partitions for `now`'s month and the next `months_ahead`; returns the
    names created. Idempotent, and safe to run from every replica at once: the work happens
    under a transaction-scoped advisory lock. A no-op on SQLite.

    A month whose range already holds rows in the DEFAULT partition is skipped with a warning:
    PostgreSQL would refuse the new partition, and moving those rows is an operator's decision.
    """
    if store.dialect != "postgresql":
        return []
    created: list[str] = []
    now = now.astimezone(UTC)
    with store.write() as session:
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PARTITION_LOCK_KEY})
        for offset in range(months_ahead + 1):
            start = _month_start(now.year, now.month + offset)
            end = _month_start(start.year, start.month + 1)
            name = partition_name(start)
            qualified = f'"{PARTITION_SCHEMA}"."{name}"'
            if session.scalar(text("SELECT to_regclass(:name)"), {"name": qualified}):
                continue
            stranded = session.scalar(
                text(
                    f'SELECT 1 FROM "{PARTITION_SCHEMA}"."{DEFAULT_PARTITION}" '  # noqa: S608
                    "WHERE created_at >= :start AND created_at < :end LIMIT 1"
                ),
                {"start": start, "end": end},
            )
            if stranded:
                log.warning(
                    "not creating partition %s: the default partition already holds rows "
                    "from %s to %s; move them out, then run ensure_partitions again",
                    name,
                    start.isoformat(),
                    end.isoformat(),
                )
                continue
            session.execute(
                text(
                    f"CREATE TABLE {qualified} PARTITION OF request_events "
                    f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
                )
            )
            created.append(name)
    if created:
        log.info("created request event partitions: %s", ", ".join(created))
    return created
