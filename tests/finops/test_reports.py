"""Spend reports (`capstan.finops.reports`): grouping, scope, period bounds, forecast and CSV.

Events are written with `insert_events`, as the event pipeline writes them, and reports are
read back from real SQLite and PostgreSQL databases. A property test holds every grouping's
rows to the report's total and to the events themselves, to the micro-dollar.
"""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capstan.bootstrap import system_principal
from capstan.events.store import insert_events
from capstan.finops.money import parse_usd
from capstan.finops.reports import (
    CSV_COLUMNS,
    Grouping,
    SpendReport,
    SpendRow,
    chargeback_csv,
    forecast,
    parse_period,
    spend_report,
)
from capstan.identity.api_keys import KeyRequest
from capstan.identity.roles import Role
from capstan.identity.scope import ScopePath
from capstan.store import Store
from tests.conftest import Capstan
from tests.events.eventdata import make_event

NOVEMBER = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
T0 = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
# Twelve days into November: what was spent by now is 12/30 of what the month will see.
NOW = datetime(2026, 11, 13, tzinfo=UTC)
BUCKETS = (
    "cost_input_micros",
    "cost_cache_read_micros",
    "cost_cache_write_micros",
    "cost_output_micros",
    "cost_reasoning_micros",
)


@dataclass(frozen=True)
class Org:
    """risk → credit → scoring, and claims → triage → intake."""

    org_id: uuid.UUID
    risk: uuid.UUID
    claims: uuid.UUID
    credit: uuid.UUID
    triage: uuid.UUID
    scoring: uuid.UUID
    intake: uuid.UUID

    def scope(self, project: str = "scoring") -> dict[str, uuid.UUID]:
        """The ids an event of `project` carries."""
        if project == "scoring":
            return {
                "org_id": self.org_id,
                "department_id": self.risk,
                "team_id": self.credit,
                "project_id": self.scoring,
            }
        return {
            "org_id": self.org_id,
            "department_id": self.claims,
            "team_id": self.triage,
            "project_id": self.intake,
        }


def make_org(capstan: Capstan) -> Org:
    directory = capstan.services.directory
    admin = system_principal(directory.organization())
    risk = directory.create_department(admin, "risk")
    claims = directory.create_department(admin, "claims")
    credit = directory.create_team(admin, "credit", "risk")
    triage = directory.create_team(admin, "triage", "claims")
    scoring = directory.create_project(admin, "scoring", "credit")
    intake = directory.create_project(admin, "intake", "triage")
    return Org(risk.org_id, risk.id, claims.id, credit.id, triage.id, scoring.id, intake.id)


def costs(
    input: int = 0, cache_read: int = 0, cache_write: int = 0, output: int = 0, reasoning: int = 0
) -> dict[str, Any]:
    """The cost fields of a priced call: the buckets and their exact sum."""
    buckets = dict(zip(BUCKETS, (input, cache_read, cache_write, output, reasoning), strict=True))
    return {"cost_micros": sum(buckets.values()), **buckets}


def spend(
    org: Org, project: str = "scoring", *, at: datetime = T0, **fields: Any
) -> dict[str, Any]:
    """A priced call ($0.000150 in, $0.000600 out) in `project` at `at`, unless `fields` say
    otherwise."""
    values = {"user_id": None, **org.scope(project), **costs(input=150, output=600), **fields}
    return make_event(created_at=at, **values)


def report(
    capstan: Capstan,
    org: Org,
    by: str,
    *,
    scope: ScopePath | None = None,
    period: tuple[datetime, datetime] = NOVEMBER,
    now: datetime = NOW,
) -> SpendReport:
    start, end = period
    where = scope or ScopePath(org.org_id)
    return spend_report(capstan.services.store, where, Grouping.parse(by), start, end, now=now)


def by_label(result: SpendReport) -> dict[str, int]:
    return {row.label: row.cost_micros for row in result.rows}


@pytest.fixture
def org(capstan: Capstan) -> Org:
    return make_org(capstan)


def test_spend_by_department_sums_each_department_under_its_name(
    capstan: Capstan, org: Org
) -> None:
    insert_events(
        capstan.services.store,
        [
            spend(org, "scoring", **costs(input=100, output=200)),
            spend(org, "scoring", **costs(input=1, cache_read=2, cache_write=3, reasoning=4)),
            spend(org, "intake", **costs(output=5_000_000)),
        ],
    )
    result = report(capstan, org, "department")
    assert by_label(result) == {"claims": 5_000_000, "risk": 310}
    [claims, risk] = result.rows
    assert claims.group == str(org.claims)
    assert (risk.requests, risk.input_micros, risk.output_micros) == (2, 101, 200)
    assert (risk.cache_read_micros, risk.cache_write_micros, risk.reasoning_micros) == (2, 3, 4)


def test_spend_by_team_sums_each_team_under_its_name(capstan: Capstan, org: Org) -> None:
    insert_events(
        capstan.services.store,
        [spend(org, "scoring"), spend(org, "scoring"), spend(org, "intake")],
    )
    assert by_label(report(capstan, org, "team")) == {"credit": 1500, "triage": 750}


def test_spend_by_model_groups_by_the_model_the_client_asked_for(
    capstan: Capstan, org: Org
) -> None:
    insert_events(
        capstan.services.store,
        [
            spend(org, model="gpt-4o-mini", **costs(input=10)),
            spend(org, model="gpt-4o-mini", **costs(input=20)),
            spend(org, model="claude-haiku", **costs(output=7)),
        ],
    )
    assert by_label(report(capstan, org, "model")) == {"gpt-4o-mini": 30, "claude-haiku": 7}


def test_spend_by_tag_groups_by_its_value_and_untagged_calls_together(
    capstan: Capstan, org: Org
) -> None:
    insert_events(
        capstan.services.store,
        [
            spend(org, tags={"env": "prod"}, **costs(input=1000)),
            spend(org, tags={"env": "dev", "team": "x"}, **costs(input=10)),
            spend(org, tags={"team": "x"}, **costs(input=3)),
            spend(org, tags={}, **costs(input=4)),
        ],
    )
    result = report(capstan, org, "tag:env")
    assert by_label(result) == {"prod": 1000, "dev": 10, "(untagged)": 7}
    assert [row.group for row in result.rows] == ["prod", "dev", None]


def test_calls_without_a_group_are_one_row_none(capstan: Capstan, org: Org) -> None:
    insert_events(
        capstan.services.store,
        [spend(org, key_id=None), spend(org, key_id=None), spend(org)],
    )
    rows = report(capstan, org, "key").rows
    assert [(row.label, row.requests) for row in rows if row.group is None] == [("(none)", 2)]


def test_keys_and_users_are_labelled_by_name(capstan: Capstan, org: Org) -> None:
    admin = system_principal(capstan.services.directory.organization())
    user = capstan.services.directory.create_user(admin, "ada@example.com", "Ada")
    key = capstan.services.keys.create(admin, KeyRequest(role=Role.SERVICE, service="scorer"))
    insert_events(capstan.services.store, [spend(org, key_id=key.row.id, user_id=user.id)])
    assert [row.label for row in report(capstan, org, "user").rows] == ["Ada <ada@example.com>"]
    [key_row] = report(capstan, org, "key").rows
    assert key_row.label.startswith(f"{key.row.name} ({key.row.prefix}")


def test_a_team_scoped_report_sees_only_its_team(capstan: Capstan, org: Org) -> None:
    insert_events(
        capstan.services.store,
        [spend(org, "scoring", **costs(input=11)), spend(org, "intake", **costs(input=900))],
    )
    team = ScopePath(org.org_id, org.claims, org.triage)
    result = report(capstan, org, "department", scope=team)
    assert by_label(result) == {"claims": 900}
    assert result.total.cost_micros == 900


def test_the_period_holds_its_first_microsecond_and_not_the_next_periods(
    capstan: Capstan, org: Org
) -> None:
    start, end = NOVEMBER
    tick = timedelta(microseconds=1)
    insert_events(
        capstan.services.store,
        [
            spend(org, at=start - tick, **costs(input=1)),
            spend(org, at=start, **costs(input=20)),
            spend(org, at=end - tick, **costs(input=300)),
            spend(org, at=end, **costs(input=4000)),
        ],
    )
    result = report(capstan, org, "department")
    assert (result.total.cost_micros, result.total.requests) == (320, 2)


def test_the_forecast_extends_the_spend_so_far_over_the_whole_period(
    capstan: Capstan, org: Org
) -> None:
    insert_events(capstan.services.store, [spend(org, **costs(input=1_200_000))])
    assert report(capstan, org, "department").forecast_micros == 3_000_000


def test_a_past_periods_forecast_is_what_it_spent(capstan: Capstan, org: Org) -> None:
    insert_events(capstan.services.store, [spend(org, **costs(input=1_200_000))])
    result = report(capstan, org, "department", now=datetime(2027, 1, 5, tzinfo=UTC))
    assert result.forecast_micros == result.total.cost_micros == 1_200_000


def test_unpriced_and_estimated_calls_are_counted(capstan: Capstan, org: Org) -> None:
    unpriced: dict[str, Any] = dict.fromkeys(("cost_micros", *BUCKETS))
    insert_events(
        capstan.services.store,
        [
            spend(org, **unpriced),
            spend(org, cost_estimated=True),
            spend(org, status=401, prompt_tokens=None, completion_tokens=None, **unpriced),
            spend(org),
        ],
    )
    total = report(capstan, org, "department").total
    assert (total.requests, total.unpriced_calls, total.estimated_calls) == (4, 1, 1)
    assert total.cost_micros == 1500


def test_the_chargeback_csv_reads_back_to_the_report(capstan: Capstan, org: Org) -> None:
    insert_events(
        capstan.services.store,
        [
            spend(org, "scoring", **costs(input=1, cache_read=2, cache_write=3, output=4)),
            spend(org, "intake", **costs(input=12_500_000, reasoning=1), cost_estimated=True),
        ],
    )
    result = report(capstan, org, "department")
    lines = list(csv.DictReader(io.StringIO(chargeback_csv(result))))
    assert tuple(lines[0]) == CSV_COLUMNS
    assert [(line["group"], line["label"]) for line in lines] == [
        (str(org.claims), "claims"),
        (str(org.risk), "risk"),
        ("TOTAL", ""),
    ]
    for line, row in zip(lines, [*result.rows, result.total], strict=True):
        assert _row_of_csv(line) == row


def _row_of_csv(line: dict[str, str]) -> SpendRow:
    money = ("cost", "input", "cache_read", "cache_write", "output", "reasoning")
    micros = {f"{name}_micros": parse_usd(line[f"{name}_usd"]) for name in money}
    counts = ("requests", "prompt_tokens", "completion_tokens", "estimated_calls")
    total = line["group"] == "TOTAL"
    return SpendRow(
        group=None if total else line["group"],
        label="TOTAL" if total else line["label"],
        unpriced_calls=int(line["unpriced_calls"]),
        **{name: int(line[name]) for name in counts},
        **micros,
    )


def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_quoted() -> None:
    zero = SpendRow(None, "", *[0] * 11)
    row = SpendRow("=HYPERLINK(1)", "=HYPERLINK(1)", *[0] * 11)
    result = SpendReport(Grouping("tag", "env"), *NOVEMBER, [row], zero, 0)
    [line, _] = csv.DictReader(io.StringIO(chargeback_csv(result)))
    assert (line["group"], line["label"]) == ("'=HYPERLINK(1)", "'=HYPERLINK(1)")


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2026-11", datetime(2026, 11, 1), datetime(2026, 12, 1)),
        ("2026-12", datetime(2026, 12, 1), datetime(2027, 1, 1)),
        ("2026-11-25", datetime(2026, 11, 25), datetime(2026, 11, 26)),
        ("2026-W48", datetime(2026, 11, 23), datetime(2026, 11, 30)),
        ("2026-w01", datetime(2025, 12, 29), datetime(2026, 1, 5)),
        ("2026", datetime(2026, 1, 1), datetime(2027, 1, 1)),
        ("current", datetime(2026, 11, 1), datetime(2026, 12, 1)),
        ("this-month", datetime(2026, 11, 1), datetime(2026, 12, 1)),
    ],
)
def test_a_period_is_its_utc_bounds(text: str, start: datetime, end: datetime) -> None:
    assert parse_period(text, NOW) == (start.replace(tzinfo=UTC), end.replace(tzinfo=UTC))


@pytest.mark.parametrize(
    "text", ["2026-13", "2026-00", "2026-02-30", "2026-W54", "2025-W53", "last tuesday", "", "26"]
)
def test_a_period_that_is_not_one_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="is not a period"):
        parse_period(text, NOW)


@pytest.mark.parametrize("text", ["galaxy", "tag", "tag:", 'tag:a"b', "team:x", "org"])
def test_a_grouping_that_is_not_one_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match=r"grouping|tag name"):
        Grouping.parse(text)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 10, 20, tzinfo=UTC), 100),  # not begun: no rate yet
        (datetime(2026, 11, 1, tzinfo=UTC), 100),  # just begun
        (datetime(2026, 11, 4, tzinfo=UTC), 1000),  # a tenth through
        (datetime(2026, 11, 16, tzinfo=UTC), 200),  # half through
        (datetime(2026, 12, 1, tzinfo=UTC), 100),  # over
        (datetime(2027, 3, 1, tzinfo=UTC), 100),
    ],
)
def test_forecast_is_a_linear_run_rate_within_the_period(now: datetime, expected: int) -> None:
    assert forecast(100, *NOVEMBER, now) == expected


# -- the property: every grouping adds up to the micro-dollar ------------------------------------

GROUPINGS = [
    *("department", "team", "project", "key", "user", "model", "provider", "deployment"),
    *("tag:env", "tag:absent"),
]
_IDS = [uuid.UUID(int=n) for n in range(1, 4)]
_maybe_id = st.sampled_from([*_IDS, None])
_cost = st.integers(min_value=0, max_value=200_000_000)


@st.composite
def _events(draw: st.DrawFn) -> dict[str, Any]:
    priced = draw(st.booleans() | st.just(True))
    buckets = draw(st.tuples(*[_cost] * 5)) if priced else None
    cost_fields = (
        dict(zip(BUCKETS, buckets, strict=True)) | {"cost_micros": sum(buckets)}
        if buckets is not None
        else dict.fromkeys(("cost_micros", *BUCKETS))
    )
    inside = draw(st.booleans() | st.just(True))
    offset = draw(st.integers(min_value=0, max_value=30 * 86_400_000_000 - 1))
    at = NOVEMBER[0] + timedelta(microseconds=offset)
    if not inside:
        at = draw(st.sampled_from([NOVEMBER[0] - timedelta(microseconds=1), NOVEMBER[1]]))
    return make_event(
        created_at=at,
        department_id=draw(_maybe_id),
        team_id=draw(_maybe_id),
        project_id=draw(_maybe_id),
        key_id=draw(_maybe_id),
        user_id=draw(_maybe_id),
        model=draw(st.sampled_from(["gpt-4o-mini", "claude-haiku", ""])),
        provider=draw(st.sampled_from(["openai", "anthropic", None])),
        deployment=draw(st.sampled_from(["openai-main", "anthropic-main", None])),
        tags=draw(st.fixed_dictionaries({}, optional={"env": st.sampled_from(["prod", "dev"])})),
        prompt_tokens=draw(st.none() | st.integers(min_value=0, max_value=10**6)),
        cost_estimated=draw(st.booleans()),
        **cost_fields,
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(events=st.lists(_events(), max_size=30))
def test_every_grouping_adds_up_to_the_events_to_the_micro_dollar(
    capstan: Capstan, events: list[dict[str, Any]]
) -> None:
    # A fresh organization per example: the database is shared, the reports never overlap.
    org_id = uuid.uuid4()
    for event in events:
        event["org_id"] = org_id
    store: Store = capstan.services.store
    insert_events(store, events)
    counted = [e for e in events if NOVEMBER[0] <= e["created_at"] < NOVEMBER[1]]
    expected = {
        "requests": len(counted),
        "cost_micros": sum(e["cost_micros"] or 0 for e in counted),
        **{
            bucket.removeprefix("cost_"): sum(e[bucket] or 0 for e in counted) for bucket in BUCKETS
        },
        "prompt_tokens": sum(e["prompt_tokens"] or 0 for e in counted),
        "estimated_calls": sum(e["cost_estimated"] for e in counted),
    }
    for by in GROUPINGS:
        result = spend_report(
            store, ScopePath(org_id), Grouping.parse(by), *NOVEMBER, now=NOVEMBER[1]
        )
        for name, value in expected.items():
            assert sum(getattr(row, name) for row in result.rows) == value, (by, name)
            assert getattr(result.total, name) == value, (by, name)
