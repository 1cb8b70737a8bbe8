"""`/api/v1/reports/spend`: spend by department, team, project, key, user, model, provider,
deployment or tag, for a period, as JSON or as a chargeback CSV.

Reading needs `spend:read` (admins and analysts), and what a key sees is bounded by its scope:
a team-scoped analyst's report covers its team only, its total included. The handler only
parses the query, calls `finops.reports` and shapes the answer; every sum is the database's.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from capstan.api.auth import authorize, services_of
from capstan.clock import utcnow
from capstan.errors import InvalidInput
from capstan.finops.money import format_usd
from capstan.finops.reports import (
    Grouping,
    SpendReport,
    SpendRow,
    chargeback_csv,
    parse_period,
    spend_report,
)
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.services import Services

router = APIRouter(tags=["finops"])
Svc = Annotated[Services, Depends(services_of)]
SpendReader = Annotated[Principal, Depends(authorize(Permission.SPEND_READ))]
_UNSAFE_IN_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")
_MONEY = (
    ("cost", "cost_micros"),
    ("input", "input_micros"),
    ("cache_read", "cache_read_micros"),
    ("cache_write", "cache_write_micros"),
    ("output", "output_micros"),
    ("reasoning", "reasoning_micros"),
)


def _row_view(row: SpendRow) -> dict[str, Any]:
    """A row with each amount twice: exact micro-dollars for programs, dollars for people."""
    view: dict[str, Any] = {
        "group": row.group,
        "label": row.label,
        "requests": row.requests,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
    }
    for name, field in _MONEY:
        micros: int = getattr(row, field)
        view[f"{name}_usd"] = format_usd(micros)
        view[f"{name}_micros"] = micros
    view["estimated_calls"] = row.estimated_calls
    view["unpriced_calls"] = row.unpriced_calls
    return view


def _report_view(report: SpendReport) -> dict[str, Any]:
    return {
        "by": str(report.grouping),
        "period": {"start": report.start.isoformat(), "end": report.end.isoformat()},
        "rows": [_row_view(row) for row in report.rows],
        "total": _row_view(report.total),
        "forecast_usd": format_usd(report.forecast_micros),
        "forecast_micros": report.forecast_micros,
        "currency": "USD",
    }


def _filename(grouping: Grouping, period: str, start: datetime) -> str:
    """`spend-department-2026-11.csv`; `current` is named after the month it resolved to, and
    anything a file system or a header would trip on becomes a dash."""
    name = f"{start:%Y-%m}" if period.strip().lower() in ("current", "this-month") else period
    slug = _UNSAFE_IN_FILENAME.sub("-", f"spend-{grouping}-{name.strip()}").strip("-")
    return f"{slug}.csv"


@router.get("/reports/spend")
def spend(
    svc: Svc,
    who: SpendReader,
    by: Annotated[
        str,
        Query(
            max_length=120,
            description="department, team, project, key, user, model, provider, deployment "
            "or tag:NAME",
        ),
    ] = "department",
    period: Annotated[
        str,
        Query(
            max_length=20,
            description="2026 (a year), 2026-11 (a month), 2026-11-25 (a day), 2026-W48 "
            "(an ISO week) or current (this month); UTC",
        ),
    ] = "current",
    output: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
) -> Any:
    """Spend in the period by the grouping, most expensive first, with the total and a
    run-rate forecast to the period's end. Money in micro-dollars and in US dollars."""
    now = utcnow()
    try:
        grouping = Grouping.parse(by)
    except ValueError as exc:
        raise InvalidInput(f"by: {exc}", field="query.by") from exc
    try:
        start, end = parse_period(period, now)
    except ValueError as exc:
        raise InvalidInput(f"period: {exc}", field="query.period") from exc
    report = spend_report(svc.store, who.scope, grouping, start, end, now=now)
    if output == "csv":
        disposition = f'attachment; filename="{_filename(grouping, period, start)}"'
        return Response(
            chargeback_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": disposition},
        )
    return _report_view(report)
