"""Spend reports: what a scope spent in a period, grouped by one allocation dimension.

A report is ONE aggregate statement over `request_events`: the rows grouped by the chosen
column (or tag value) and, in the same statement (`UNION ALL`), the same sums over every
matching event without grouping. The total is therefore what the database says was spent,
not the sum of the rows taken in Python, which is what lets a test hold the rows to it; and
a NULL group (an event without a team, a key or the tag) is a row of its own, so none is lost.
Money is summed as integer micro-dollars, so every report adds up to the micro-dollar.

Names (of departments, teams, projects, keys, users) are looked up afterwards in one query per
report, only for the ids that appear. Periods are UTC and half-open, [start, end), so a month's
report and the next one's never share an event.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, get_args

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    and_,
    case,
    func,
    literal_column,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from capstan.finops.money import format_usd
from capstan.identity.scope import ScopePath, visible_to
from capstan.store.engine import Store
from capstan.store.schema import ApiKey, Department, Project, RequestEvent, Team, User

GroupKind = Literal[
    "department", "team", "project", "key", "user", "model", "provider", "deployment", "tag"
]
GROUP_KINDS: tuple[GroupKind, ...] = get_args(GroupKind)
NO_GROUP = "(none)"
UNTAGGED = "(untagged)"
TAG_KEY_MAX = 100
# Money columns in US dollars, each from its micro-dollar field of SpendRow.
_CSV_MONEY = (
    ("cost_usd", "cost_micros"),
    ("input_usd", "input_micros"),
    ("output_usd", "output_micros"),
    ("cache_read_usd", "cache_read_micros"),
    ("cache_write_usd", "cache_write_micros"),
    ("reasoning_usd", "reasoning_micros"),
)
CSV_COLUMNS = (
    *("group", "label", "requests", "prompt_tokens", "completion_tokens"),
    *(column for column, _ in _CSV_MONEY),
    *("estimated_calls", "unpriced_calls"),
)
_MONTH = re.compile(r"(\d{4})-(\d{2})", re.ASCII)
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_WEEK = re.compile(r"(\d{4})-W(\d{2})", re.ASCII)
_YEAR = re.compile(r"\d{4}", re.ASCII)
_CURRENT = frozenset({"current", "this-month"})
# Spreadsheets run a cell that starts with one of these as a formula; names and tag values
# come from whoever holds a key, so a chargeback file must not carry them unquoted.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class Grouping:
    """What a report groups by: an allocation column, or the value of one tag (`tag:NAME`)."""

    kind: GroupKind
    tag: str | None = None

    @classmethod
    def parse(cls, text: str) -> Grouping:
        """A grouping from its text form; ValueError naming the choices otherwise. A tag name
        may not hold `"`, `\\` or control characters: on SQLite it becomes part of a quoted
        JSON path, which they would end early."""
        kind, sep, tag = text.strip().partition(":")
        if sep:
            if kind != "tag" or not tag:
                raise ValueError(f"{text!r} is not a grouping; a tag grouping is tag:NAME")
            if len(tag) > TAG_KEY_MAX or any(c in '"\\' or not c.isprintable() for c in tag):
                raise ValueError(f"tag:{tag[:40]!r} is not a tag name tags can hold")
            return cls("tag", tag)
        if kind not in GROUP_KINDS or kind == "tag":
            choices = ", ".join(k for k in GROUP_KINDS if k != "tag")
            raise ValueError(f"{text!r} is not a grouping: one of {choices} or tag:NAME")
        return cls(kind)

    def __str__(self) -> str:
        return f"tag:{self.tag}" if self.kind == "tag" else self.kind


def parse_period(text: str, now: datetime) -> tuple[datetime, datetime]:
    """UTC bounds [start, end) of `2026` (a year), `2026-11` (a month), `2026-11-25` (a day),
    `2026-W48` (an ISO week, Monday to Monday) or `current`/`this-month` (the month holding
    `now`). ValueError, saying which forms exist, for anything else."""
    value = text.strip().lower()
    try:
        if value in _CURRENT:
            return _month(now.astimezone(UTC).year, now.astimezone(UTC).month)
        if _YEAR.fullmatch(value):
            year = int(value)
            return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
        if match := _MONTH.fullmatch(value):
            return _month(int(match[1]), int(match[2]))
        if _DAY.fullmatch(value):
            start = _midnight(date.fromisoformat(value))
            return start, start + timedelta(days=1)
        if match := _WEEK.fullmatch(value.upper()):
            start = _midnight(date.fromisocalendar(int(match[1]), int(match[2]), 1))
            return start, start + timedelta(weeks=1)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a period: {exc}") from exc
    raise ValueError(
        f"{text!r} is not a period: use a year (2026), a month (2026-11), a day (2026-11-25), "
        "an ISO week (2026-W48) or current"
    )


def _month(year: int, month: int) -> tuple[datetime, datetime]:
    if not 1 <= month <= 12:
        raise ValueError(f"month must be 01 to 12, not {month:02d}")
    start = datetime(year, month, 1, tzinfo=UTC)
    following = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, following


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class SpendRow:
    """One group's spend (or, as `SpendReport.total`, everything's). Money in micro-dollars;
    `unpriced_calls` used tokens but had no price, so their cost is missing from the sums."""

    group: str | None
    label: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_micros: int
    input_micros: int
    cache_read_micros: int
    cache_write_micros: int
    output_micros: int
    reasoning_micros: int
    estimated_calls: int
    unpriced_calls: int


@dataclass(frozen=True, slots=True)
class SpendReport:
    grouping: Grouping
    start: datetime
    end: datetime
    rows: list[SpendRow]
    total: SpendRow
    forecast_micros: int


def forecast(spent: int, start: datetime, end: datetime, now: datetime) -> int:
    """Spend at the end of [start, end) if the rest of it goes at the rate so far.

    A linear run-rate: `spent * period length // elapsed`, in whole microseconds and integer
    arithmetic (rounded down), with the elapsed time measured to `now` clipped to the period.
    So a past period forecasts exactly what it spent, and a period that has not begun (or has
    just begun) forecasts what it holds, as there is no rate yet to extrapolate. Deliberately
    simple: it knows nothing of weekends or seasonality, and says so by being a straight line.
    """
    elapsed = (min(max(now, start), end) - start) // timedelta(microseconds=1)
    length = (end - start) // timedelta(microseconds=1)
    if elapsed <= 0 or elapsed >= length:
        return spent
    return spent * length // elapsed


_ID_COLUMNS: Mapping[GroupKind, Any] = {
    "department": RequestEvent.department_id,
    "team": RequestEvent.team_id,
    "project": RequestEvent.project_id,
    "key": RequestEvent.key_id,
    "user": RequestEvent.user_id,
}
_TEXT_COLUMNS: Mapping[GroupKind, Any] = {
    "model": RequestEvent.model,
    "provider": RequestEvent.provider,
    "deployment": RequestEvent.deployment,
}
# The numeric fields of SpendRow, in the order the statement selects them.
_SUMS = tuple(f.name for f in fields(SpendRow))[2:]


def _group_column(grouping: Grouping) -> ColumnElement[Any]:
    if grouping.kind == "tag":
        assert grouping.tag is not None
        # JSON_EXTRACT on SQLite, `->>` on PostgreSQL; NULL where the tag is missing.
        tag: ColumnElement[Any] = RequestEvent.tags[grouping.tag].as_string()
        return tag
    column: ColumnElement[Any] = {**_ID_COLUMNS, **_TEXT_COLUMNS}[grouping.kind]
    return column


def _aggregates() -> list[ColumnElement[Any]]:
    """The sums, each coalesced so an empty set reads 0 rather than NULL."""
    e = RequestEvent

    def total(value: Any) -> ColumnElement[Any]:
        return func.coalesce(func.sum(value), 0)

    used_tokens = or_(e.prompt_tokens.is_not(None), e.completion_tokens.is_not(None))
    unpriced = case((and_(e.cost_micros.is_(None), used_tokens), 1), else_=0)
    columns = [
        func.count(),
        total(e.prompt_tokens),
        total(e.completion_tokens),
        total(e.cost_micros),
        total(e.cost_input_micros),
        total(e.cost_cache_read_micros),
        total(e.cost_cache_write_micros),
        total(e.cost_output_micros),
        total(e.cost_reasoning_micros),
        total(case((e.cost_estimated, 1), else_=0)),
        total(unpriced),
    ]
    return [column.label(name) for column, name in zip(columns, _SUMS, strict=True)]


def report_statement(
    scope: ScopePath, grouping: Grouping, start: datetime, end: datetime
) -> CompoundSelect[Any]:
    """Grouped rows (`is_total` 0) and the overall sums (`is_total` 1) in one statement. The
    rows are grouped by the output name `grp`: on PostgreSQL a tag expression repeated in
    GROUP BY would carry its own bound parameter and not be recognised as the same one."""
    e = RequestEvent
    scope_columns = {
        "org_id": e.org_id,
        "department_id": e.department_id,
        "team_id": e.team_id,
        "project_id": e.project_id,
    }
    where = (visible_to(scope, scope_columns), e.created_at >= start, e.created_at < end)
    group = _group_column(grouping).label("grp")
    grouped = (
        select(literal_column("0").label("is_total"), group, *_aggregates())
        .where(*where)
        .group_by(literal_column("grp"))
    )
    overall = select(literal_column("1"), null(), *_aggregates()).where(*where)
    return union_all(grouped, overall)


def spend_report(
    store: Store,
    scope: ScopePath,
    grouping: Grouping,
    start: datetime,
    end: datetime,
    *,
    now: datetime,
) -> SpendReport:
    """What `scope` spent in [start, end), by `grouping`, most expensive first, with the total
    and the forecast to the period's end."""
    with store.read() as session:
        results = list(session.execute(report_statement(scope, grouping, start, end)))
        groups = [_group_key(grouping, r.grp) for r in results if r.is_total == 0]
        labels = _labels(session, grouping, groups)
    rows: list[SpendRow] = []
    total: SpendRow | None = None
    for result in results:
        sums = [int(getattr(result, name)) for name in _SUMS]  # PostgreSQL sums are Decimals
        if result.is_total == 1:
            total = SpendRow(None, "TOTAL", *sums)
            continue
        key = _group_key(grouping, result.grp)
        rows.append(SpendRow(key, labels.get(key or "") or _empty_label(grouping), *sums))
    assert total is not None  # an aggregate without GROUP BY always returns its row
    rows.sort(key=lambda row: (-row.cost_micros, row.label, row.group or ""))
    return SpendReport(
        grouping, start, end, rows, total, forecast(total.cost_micros, start, end, now)
    )


def _group_key(grouping: Grouping, value: Any) -> str | None:
    """A group as text: ids in their canonical dashed form, whatever the driver returned."""
    if value is None:
        return None
    if grouping.kind in _ID_COLUMNS:
        return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))
    return str(value)


def _empty_label(grouping: Grouping) -> str:
    return UNTAGGED if grouping.kind == "tag" else NO_GROUP


def _labels(session: Session, grouping: Grouping, groups: Iterable[str | None]) -> dict[str, str]:
    """How each group reads to a person: the name behind an id, the value itself otherwise.
    An id whose row is gone (or was never there) reads as the id."""
    labels = {g: g for g in groups if g}
    if grouping.kind in _ID_COLUMNS and labels:
        ids = [uuid.UUID(g) for g in labels]
        for row_id, label in session.execute(_names_statement(grouping.kind, ids)):
            labels[str(row_id)] = label
    return labels


def _names_statement(kind: GroupKind, ids: list[uuid.UUID]) -> Any:
    if kind == "key":
        label: Any = ApiKey.name + " (" + ApiKey.prefix + "…)"
        return select(ApiKey.id, label).where(ApiKey.id.in_(ids))
    if kind == "user":
        return select(User.id, User.name + " <" + User.email + ">").where(User.id.in_(ids))
    table: Any = {"department": Department, "team": Team, "project": Project}[kind]
    return select(table.id, table.name).where(table.id.in_(ids))


def chargeback_csv(report: SpendReport) -> str:
    """The report as CSV: one line per group and a final TOTAL line, money in US dollars with
    up to six decimals (exact). A name or tag value that a spreadsheet would run as a formula
    is prefixed with `'`, the usual defence; amounts are never negative, so none is touched."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in report.rows:
        writer.writerow(_csv_line(row, row.group or "", row.label))
    writer.writerow(_csv_line(report.total, "TOTAL", ""))
    return out.getvalue()


def _csv_line(row: SpendRow, group: str, label: str) -> list[str | int]:
    counts = [row.requests, row.prompt_tokens, row.completion_tokens]
    money = [format_usd(getattr(row, field)) for _, field in _CSV_MONEY]
    return [_cell(group), _cell(label), *counts, *money, row.estimated_calls, row.unpriced_calls]


def _cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text
