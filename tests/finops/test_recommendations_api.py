"""`GET /api/v1/recommendations` and `capstan recommend`, through a real server on SQLite and
PostgreSQL: request events inserted as the event pipeline writes them, the gateway configured
through the API, the aggregates gathered by `recommendation_queries`.

The organization: project scoring (team credit) calls alias `chat`, routed to gpt-4o, 200 times
in the last minutes with 20,000-token prompts, 150 of them starting the same way; gpt-4o-mini
is deployed but unused by it; a spare deployment and a service key have sat idle for 60 days;
the project's $5 monthly budget is spent. Beside them, calls the window must not count.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from capstan.bootstrap import system_principal
from capstan.cli import output
from capstan.clock import utcnow
from capstan.events.store import insert_events
from capstan.finops.budgets import BudgetRequest
from capstan.identity.api_keys import KeyRequest
from capstan.identity.roles import Role
from capstan.store.schema import ApiKey, GatewayDeployment
from tests.apiclient import bearer, make_key
from tests.conftest import Capstan
from tests.finops.test_reports import Org, costs, make_org, spend
from tests.servers import RunningServer
from tests.test_cli import Cli

URL = "/api/v1/recommendations"
PROBLEM = "application/problem+json"
SHARED = "f" * 32  # the fingerprint of the 150 calls that start alike
# A gpt-4o call of 20,000 tokens in, 500 out: $0.05 + $0.005
CALL = {"prompt_tokens": 20_000, "completion_tokens": 500, **costs(input=50_000, output=5_000)}
ON_GPT4O = {"model": "chat", "deployment": "big@openai-main", "upstream_model": "gpt-4o-2024-08-06"}
UNPRICED = {"prompt_tokens": 20_000, "completion_tokens": 500, "cost_micros": None}
# 200 calls: $11.00 on gpt-4o, $0.66 on gpt-4o-mini (4,000,000 x $0.15 + 100,000 x $0.60)
CHEAPER_SAVING = 11_000_000 - 660_000
# 149 calls could read the 20,000-token prefix from a cache at $1.25 instead of $2.50 a million
CACHING_SAVING = 149 * 20_000 * 1_250_000 // 1_000_000


def created(response: httpx.Response) -> None:
    assert response.status_code == 201, response.text


def configure_gateway(admin: httpx.Client) -> None:
    provider = {"name": "openai-main", "kind": "openai", "api_key": "env:OPENAI_API_KEY"}
    created(admin.post("/api/v1/providers", json=provider))
    for name, model in [("big", "gpt-4o"), ("mini", "gpt-4o-mini"), ("spare", "gpt-4o-mini")]:
        body = {"name": f"{name}@openai-main", "provider": "openai-main", "model": model}
        created(admin.post("/api/v1/deployments", json=body))
    alias = {"name": "chat", "targets": [{"deployment": "big@openai-main"}]}
    created(admin.post("/api/v1/aliases", json=alias))


def seed_events(capstan: Capstan, org: Org) -> None:
    now = utcnow()
    calls = [
        spend(
            org,
            "scoring",
            at=now - timedelta(seconds=1 + i),
            prompt_fingerprint=SHARED if i < 150 else uuid.uuid4().hex,
            **ON_GPT4O,
            **CALL,
        )
        for i in range(200)
    ]
    unpriced = spend(org, "scoring", at=now, **ON_GPT4O, **UNPRICED)
    # A failed call's prompt would not fit gpt-4o-mini; one before the window costs a fortune.
    failed = spend(
        org, "scoring", at=now, status=500, **ON_GPT4O, **UNPRICED | {"prompt_tokens": 500_000}
    )
    old = spend(org, at=now - timedelta(days=40), **ON_GPT4O, **costs(input=10**9))
    insert_events(capstan.services.store, [*calls, unpriced, failed, old])


def age(capstan: Capstan, table: Any, condition: Any, days: int) -> None:
    with capstan.services.store.write() as session:
        session.execute(
            update(table).where(condition).values(created_at=utcnow() - timedelta(days=days))
        )


@pytest.fixture
def org(capstan: Capstan, admin: httpx.Client) -> Org:
    org = make_org(capstan)
    configure_gateway(admin)
    seed_events(capstan, org)
    services = capstan.services
    principal = system_principal(services.directory.organization())
    batch = services.keys.create(
        principal, KeyRequest(role=Role.SERVICE, name="batch", service="batch")
    )
    age(capstan, ApiKey, ApiKey.id == batch.row.id, 60)
    age(capstan, GatewayDeployment, GatewayDeployment.name == "spare@openai-main", 60)
    budget = BudgetRequest("scoring-monthly", "project:scoring", "monthly", "5")
    services.budgets.create(principal, budget)
    return org


def recommendations(
    client: httpx.Client, key: str | None = None, **params: Any
) -> list[dict[str, Any]]:
    response = client.get(URL, params=params, headers=bearer(key) if key else None)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["recommendations"]
    return found


def test_every_kind_is_found_and_ranked_by_monthly_saving(admin: httpx.Client, org: Org) -> None:
    found = recommendations(admin)
    assert [r["kind"] for r in found] == [
        "cheaper_model",
        "prompt_caching",
        "unused_key",
        "unused_deployment",
        "budget_runout",
    ]
    assert [r["monthly_saving_micros"] for r in found] == [
        CHEAPER_SAVING,
        CACHING_SAVING,
        None,
        None,
        None,
    ]


def test_a_cheaper_model_counts_only_the_window_s_successful_priced_calls(
    admin: httpx.Client, org: Org
) -> None:
    [found] = recommendations(admin, kind="cheaper_model")
    assert found["scope"] == {"project": "scoring", "project_id": str(org.scoring), "alias": "chat"}
    assert found["monthly_saving_usd"] == "10.34"
    assert found["action"] == "point alias chat at deployment mini@openai-main"
    assert found["quality_difference"] is None
    assert found["quality_note"] == "no evaluation scores are recorded for gpt-4o and gpt-4o-mini"
    evidence = found["evidence"]
    assert (evidence["calls"], evidence["priced_calls"]) == (201, 200)
    assert (evidence["prompt_tokens"], evidence["completion_tokens"]) == (4_000_000, 100_000)
    assert (evidence["cost_micros"], evidence["max_prompt_tokens"]) == (11_000_000, 20_000)
    assert evidence["candidate"]["model"] == "gpt-4o-mini"


def test_prompt_caching_is_estimated_from_the_repeated_fingerprint(
    admin: httpx.Client, org: Org
) -> None:
    [found] = recommendations(admin, kind="prompt_caching")
    assert found["scope"] == {"project": "scoring", "project_id": str(org.scoring), "alias": "chat"}
    evidence = found["evidence"]
    assert (evidence["calls"], evidence["repeated_calls"], evidence["repeated_prompts"]) == (
        200,
        150,
        1,
    )
    assert evidence["reusable_tokens"] == 149 * 20_000
    assert found["monthly_saving_usd"] == "3.725"


def test_only_idle_model_calling_keys_and_deployments_older_than_the_window_are_listed(
    admin: httpx.Client, org: Org
) -> None:
    found = recommendations(admin, kind="unused_key,unused_deployment")
    assert [(r["kind"], r["evidence"]["age_days"]) for r in found] == [
        ("unused_key", 60),
        ("unused_deployment", 60),
    ]
    assert found[0]["scope"]["key"].startswith("batch ")
    assert found[1]["scope"] == {"deployment": "spare@openai-main"}


def test_a_spent_budget_is_reported_as_reached(admin: httpx.Client, org: Org) -> None:
    [found] = recommendations(admin, kind="budget_runout")
    assert found["scope"]["budget"] == "scoring-monthly"
    assert found["evidence"]["already_reached"] is True
    assert found["evidence"]["limit_micros"] == 5_000_000


def test_a_team_scoped_analyst_sees_its_team_s_findings_but_no_deployments(
    admin: httpx.Client, anonymous: httpx.Client, org: Org
) -> None:
    credit = make_key(admin, "analyst", team="credit")
    triage = make_key(admin, "analyst", team="triage")
    found = recommendations(anonymous, credit["key"])
    assert [r["kind"] for r in found] == ["cheaper_model", "prompt_caching", "budget_runout"]
    assert recommendations(anonymous, triage["key"]) == []


def test_a_developer_key_may_not_read_recommendations(
    admin: httpx.Client, anonymous: httpx.Client
) -> None:
    developer = make_key(admin, "developer")
    response = anonymous.get(URL, headers=bearer(developer["key"]))
    assert response.status_code == 403
    assert response.headers["content-type"].startswith(PROBLEM)


@pytest.mark.parametrize(("param", "value"), [("days", "0"), ("days", "366"), ("kind", "cheap")])
def test_a_bad_window_or_kind_is_a_422_problem_naming_it(
    admin: httpx.Client, param: str, value: str
) -> None:
    response = admin.get(URL, params={param: value})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["field"] == f"query.{param}"


# -- the command line -----------------------------------------------------------------------------


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(capsys, monkeypatch)


def test_recommend_prints_a_table_row_per_recommendation(
    cli: Cli, capstan: Capstan, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(output.console, "width", 250)
    code, out, err = cli.local(capstan)("recommend", "--kind", "cheaper_model,prompt_caching")
    assert code == 0, err
    assert "Recommendations from the last 30 days" in out
    rows = {line.split()[0]: line for line in out.splitlines() if "project scoring" in line}
    assert set(rows) == {"cheaper_model", "prompt_caching"}
    assert "project scoring, alias chat      10.34" in rows["cheaper_model"]
    assert "project scoring, alias chat      3.725" in rows["prompt_caching"]


def test_recommend_json_is_the_same_locally_and_remotely(
    cli: Cli, capstan: Capstan, org: Org, server: RunningServer
) -> None:
    args = ("recommend", "--days", "7", "--json")
    code, local, err = cli.local(capstan)(*args)
    assert code == 0, err
    code, remote, err = cli.remote(server, capstan.admin_key)(*args)
    assert code == 0, err
    # The budget's forecast moves with the clock; everything else is the same answer.
    local_found, remote_found = (
        [r for r in json.loads(text)["recommendations"] if r["kind"] != "budget_runout"]
        for text in (local, remote)
    )
    assert local_found == remote_found
    assert [r["kind"] for r in remote_found] == [
        "cheaper_model",
        "prompt_caching",
        "unused_key",
        "unused_deployment",
    ]
    assert json.loads(remote)["window"]["days"] == 7


@pytest.mark.parametrize(
    "argv", [("--days", "0"), ("--days", "many"), ("--kind", "cheap"), ("--kind", "a,b")]
)
def test_recommend_with_bad_input_prints_one_line_and_fails(
    cli: Cli, capstan: Capstan, argv: tuple[str, ...]
) -> None:
    code, out, err = cli.local(capstan)("recommend", *argv)
    assert code != 0
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error:")
    assert argv[0] in err
    assert "Traceback" not in err
