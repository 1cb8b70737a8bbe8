"""`GET /api/v1/reports/spend`: JSON and chargeback CSV through a real server, guarded by
`spend:read` and bounded by the key's scope, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import httpx
import pytest

from capstan.events.store import insert_events
from tests.apiclient import bearer, make_key
from tests.conftest import Capstan
from tests.finops.test_reports import Org, costs, make_org, spend

PROBLEM = "application/problem+json"
# A past month, so the forecast (which depends on today) is exactly the total.
OCTOBER = datetime(2026, 10, 14, 9, 30, tzinfo=UTC)
URL = "/api/v1/reports/spend"


@pytest.fixture
def org(capstan: Capstan) -> Org:
    org = make_org(capstan)
    insert_events(
        capstan.services.store,
        [
            spend(org, "scoring", at=OCTOBER, **costs(input=1_000_000, output=250_000)),
            spend(org, "scoring", at=OCTOBER, **costs(cache_read=5, reasoning=7)),
            spend(org, "intake", at=OCTOBER, **costs(output=12_500_000)),
        ],
    )
    return org


def test_the_json_report_has_rows_a_total_and_a_forecast(admin: httpx.Client, org: Org) -> None:
    response = admin.get(URL, params={"by": "department", "period": "2026-10"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["by"] == "department"
    assert body["period"] == {
        "start": "2026-10-01T00:00:00+00:00",
        "end": "2026-11-01T00:00:00+00:00",
    }
    assert [(r["label"], r["cost_usd"], r["requests"]) for r in body["rows"]] == [
        ("claims", "12.50", 1),
        ("risk", "1.250012", 2),
    ]
    [_, risk] = body["rows"]
    assert risk["group"] == str(org.risk)
    assert (risk["input_micros"], risk["output_micros"], risk["reasoning_usd"]) == (
        1_000_000,
        250_000,
        "0.000007",
    )
    assert (body["total"]["cost_micros"], body["total"]["cost_usd"]) == (13_750_012, "13.750012")
    assert (body["forecast_micros"], body["forecast_usd"]) == (13_750_012, "13.750012")
    assert body["currency"] == "USD"


def test_the_csv_report_is_a_download_named_after_its_grouping_and_period(
    admin: httpx.Client, org: Org
) -> None:
    params = {"by": "team", "period": "2026-10", "format": "csv"}
    response = admin.get(URL, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="spend-team-2026-10.csv"' in response.headers["content-disposition"]
    lines = list(csv.DictReader(io.StringIO(response.text)))
    assert [(line["label"], line["cost_usd"]) for line in lines] == [
        ("triage", "12.50"),
        ("credit", "1.250012"),
        ("", "13.750012"),
    ]
    assert lines[-1]["group"] == "TOTAL"


def test_a_tag_grouping_names_the_file_without_a_colon(admin: httpx.Client, org: Org) -> None:
    params = {"by": "tag:env", "period": "2026-10", "format": "csv"}
    response = admin.get(URL, params=params)
    assert response.status_code == 200, response.text
    assert 'filename="spend-tag-env-2026-10.csv"' in response.headers["content-disposition"]


def test_a_team_scoped_analyst_sees_only_its_team(
    admin: httpx.Client, anonymous: httpx.Client, org: Org
) -> None:
    analyst = make_key(admin, "analyst", team="triage")
    response = anonymous.get(
        URL, params={"by": "team", "period": "2026-10"}, headers=bearer(analyst["key"])
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [row["label"] for row in body["rows"]] == ["triage"]
    assert body["total"]["cost_usd"] == "12.50"


def test_a_developer_key_may_not_read_spend(
    admin: httpx.Client, anonymous: httpx.Client, org: Org
) -> None:
    developer = make_key(admin, "developer")
    response = anonymous.get(URL, params={"period": "2026-10"}, headers=bearer(developer["key"]))
    assert response.status_code == 403
    assert response.headers["content-type"].startswith(PROBLEM)


@pytest.mark.parametrize(
    ("param", "value"), [("by", "galaxy"), ("by", "tag:"), ("period", "2026-13")]
)
def test_a_bad_grouping_or_period_is_a_422_problem_naming_it(
    admin: httpx.Client, param: str, value: str
) -> None:
    response = admin.get(URL, params={param: value})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith(PROBLEM)
    problem = response.json()
    assert problem["field"] == f"query.{param}"
    assert problem["detail"].startswith(f"{param}: ")
