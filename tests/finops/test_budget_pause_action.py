"""A budget with `pause_at` pauses its own key, project, team or department when its spend
crosses that percentage of the limit: once per period, audited, on every gateway, with a
refusal that names the budget; a scope paused already keeps its pause, and budgets on scopes
that cannot be paused are refused when they are created.

Calls cost 0.005 USD each (output at 1,000 USD per million tokens, 5 tokens), so a limit of
0.01 USD is crossed at 100 % by the second call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.apiclient import make_key, make_tree
from tests.conftest import Capstan
from tests.finops.test_budget_enforcement import Receiver, priced
from tests.gateway.setup import GatewayUnderTest, start_gateway
from tests.servers import start_asgi
from tests.test_cli import Cli

DEPLOYMENT = "gpt-4o-mini@sim-openai"
RELOAD_S = 0.5  # longer than the config poll interval
WAIT_S = 10.0


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    received = Receiver()
    hook = start_asgi(received)
    try:
        yield received, f"{hook.url}/alerts"
    finally:
        hook.stop()


@pytest.fixture
def gateway(tmp_path: Path, receiver: tuple[Receiver, str]) -> Iterator[GatewayUnderTest]:
    for running in start_gateway(
        tmp_path, events_flush_interval_s=0.1, budget_webhook_url=receiver[1]
    ):
        priced(running)
        with running.admin() as admin:
            make_tree(admin)  # retail → credit → loans, claims → triage → intake
        yield running


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(capsys, monkeypatch)


def on_gateway(cli: Cli, gateway: GatewayUnderTest) -> Cli:
    cli.monkeypatch.setenv("CAPSTAN_URL", gateway.url)
    cli.monkeypatch.setenv("CAPSTAN_API_KEY", gateway.key)
    return cli


def call(gateway: GatewayUnderTest, key: str) -> openai.types.chat.ChatCompletion:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
    return client.chat.completions.create(
        model=DEPLOYMENT, messages=[{"role": "user", "content": "tell me a story"}], max_tokens=5
    )


def create_budget(gateway: GatewayUnderTest, **fields: Any) -> dict[str, Any]:
    body = {"period": "monthly", "action": "alert-only", "limit_usd": "0.01", **fields}
    with gateway.admin() as admin:
        response = admin.post("/api/v1/budgets", json=body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
    time.sleep(RELOAD_S)  # every gateway loads the budget
    return created


def alerts_for(receiver: Receiver, budget: str, count: int) -> list[dict[str, Any]]:
    """The webhook bodies of `budget`'s alerts, once `count` of them arrived: an alert is posted
    after its row (and the pause it caused) is committed."""
    deadline = time.monotonic() + WAIT_S
    while True:
        found = [body for body in receiver.received if body["budget"] == budget]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def pauses(gateway: GatewayUnderTest) -> list[dict[str, Any]]:
    with gateway.admin() as admin:
        response = admin.get("/api/v1/pauses", params={"include_resumed": True})
        assert response.status_code == 200, response.text
        listed: list[dict[str, Any]] = response.json()
    return listed


def test_a_budget_that_reaches_its_pause_threshold_pauses_its_team(
    gateway: GatewayUnderTest, receiver: tuple[Receiver, str], cli: Cli
) -> None:
    on_gateway(cli, gateway)
    options = ["--scope", "team:credit", "--limit-usd", "0.01", "--action", "alert-only"]
    code, _, err = cli(
        "budgets", "create", "credit-monthly", *options, "--thresholds", "50", "--pause-at", "100"
    )
    assert code == 0, err
    shown = cli.json("budgets", "show", "credit-monthly")
    assert (shown["pause_at"], shown["thresholds"]) == (100, [50, 100])
    with gateway.admin() as admin:
        key = make_key(admin, "service", project="loans")["key"]
    time.sleep(RELOAD_S)

    assert call(gateway, key).choices  # 50 %
    assert call(gateway, key).choices  # 100 %: the budget pauses team credit
    posted = alerts_for(receiver[0], "credit-monthly", 2)
    time.sleep(RELOAD_S)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        call(gateway, key)

    assert [(a["threshold_percent"], a["paused"]) for a in posted] == [(50, False), (100, True)]
    assert "paused" in posted[1]["text"]
    body: Any = refused.value.body
    assert body["code"] == "scope_paused"
    assert "team credit is paused (by budget:credit-monthly since " in body["message"]
    assert (
        "budget 'credit-monthly' reached 100 % of its monthly limit (0.01 of 0.01 USD)"
        in body["message"]
    )
    [paused] = pauses(gateway)
    assert (paused["scope_label"], paused["paused_by"]) == ("team credit", "budget:credit-monthly")
    with gateway.admin() as admin:
        entries = admin.get("/api/v1/audit", params={"resource": "pauses"}).json()["items"]
    assert [(e["action"], e["actor"], e["resource_id"]) for e in entries] == [
        ("pause.start", "budget:credit-monthly", paused["id"])
    ]


def test_a_paused_project_calls_models_again_once_resumed_by_hand(
    gateway: GatewayUnderTest, receiver: tuple[Receiver, str]
) -> None:
    created = create_budget(gateway, name="loans-cap", scope="project:loans", pause_at=100)
    with gateway.admin() as admin:
        key = make_key(admin, "service", project="loans")["key"]
    call(gateway, key)
    call(gateway, key)
    alerts_for(receiver[0], created["name"], 3)
    time.sleep(RELOAD_S)
    with pytest.raises(openai.PermissionDeniedError):
        call(gateway, key)

    with gateway.admin() as admin:
        resumed = admin.post("/api/v1/pauses/resume", json={"scope": "project:loans"})
    assert resumed.status_code == 200, resumed.text
    time.sleep(RELOAD_S)

    assert call(gateway, key).choices  # the threshold was reached once this period: no re-pause
    time.sleep(RELOAD_S)
    assert [p["resumed_at"] is not None for p in pauses(gateway)] == [True]


def test_a_scope_paused_already_keeps_its_pause_and_its_reason(
    gateway: GatewayUnderTest, receiver: tuple[Receiver, str]
) -> None:
    created = create_budget(
        gateway, name="intake-cap", scope="project:intake", limit_usd="0.005", pause_at=100
    )
    with gateway.admin() as admin:
        key = make_key(admin, "service", project="intake")["key"]
    slow = httpx.put(
        f"{gateway.simulator}/_sim/faults", json={"model": "gpt-4o-mini", "latency_ms": 2000}
    )
    slow.raise_for_status()
    # Admitted before the pause, settled after it: the settlement crosses 100 %.
    served: list[openai.types.chat.ChatCompletion] = []
    in_flight = threading.Thread(target=lambda: served.append(call(gateway, key)))
    in_flight.start()
    time.sleep(0.7)
    with gateway.admin() as admin:
        response = admin.post(
            "/api/v1/pauses", json={"scope": "project:intake", "reason": "INC-7: by hand"}
        )
        assert response.status_code == 201, response.text
    in_flight.join(timeout=WAIT_S)

    posted = alerts_for(receiver[0], created["name"], 3)

    assert len(served) == 1
    assert [(a["threshold_percent"], a["paused"]) for a in posted] == [
        (50, False),
        (80, False),
        (100, False),
    ]
    [paused] = pauses(gateway)
    assert (paused["reason"], paused["resumed_at"]) == ("INC-7: by hand", None)
    assert not paused["paused_by"].startswith("budget:")
    with gateway.admin() as admin:
        entries = admin.get("/api/v1/audit", params={"resource": "pauses"}).json()["items"]
    assert [e["action"] for e in entries] == ["pause.start"]


def test_a_threshold_below_the_pause_threshold_does_not_pause(
    gateway: GatewayUnderTest, receiver: tuple[Receiver, str]
) -> None:
    created = create_budget(
        gateway, name="triage-cap", scope="team:triage", limit_usd="0.025", pause_at=100
    )
    assert created["thresholds"] == [50, 80, 100]
    with gateway.admin() as admin:
        key = make_key(admin, "service", project="intake")["key"]

    for _ in range(3):
        call(gateway, key)  # 20, 40, 60 %: crosses 50 %
    first = alerts_for(receiver[0], created["name"], 1)
    time.sleep(RELOAD_S)
    assert call(gateway, key).choices  # 80 %
    posted = alerts_for(receiver[0], created["name"], 2)

    assert [(a["threshold_percent"], a["paused"]) for a in first] == [(50, False)]
    assert [(a["threshold_percent"], a["paused"]) for a in posted] == [(50, False), (80, False)]
    assert pauses(gateway) == []


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"scope": "tag:env=prod"}, "tag env=prod cannot be paused"),
        ({"scope": "org"}, "organization cannot be paused"),
        ({"scope": "team:credit", "pause_at": 0}, "between 1 and 1000"),
        ({"scope": "team:credit", "pause_at": 1001}, "between 1 and 1000"),
        (
            {"scope": "team:credit", "thresholds": list(range(10, 110, 10)), "pause_at": 15},
            "up to 10",
        ),
    ],
)
def test_a_pause_threshold_on_a_budget_that_cannot_pause_is_refused(
    admin: httpx.Client, fields: dict[str, Any], problem: str
) -> None:
    make_tree(admin)
    body = {"name": "cap", "period": "monthly", "limit_usd": "12.50", "pause_at": 100, **fields}

    response = admin.post("/api/v1/budgets", json=body)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "pause_at" in response.json()["detail"]
    assert problem in response.json()["detail"]
    assert admin.get("/api/v1/budgets").json() == []


def test_the_cli_refuses_a_pause_threshold_on_a_tag_in_one_line(cli: Cli, capstan: Capstan) -> None:
    cli.local(capstan)

    options = ["--scope", "tag:env=prod", "--limit-usd", "12.50", "--pause-at", "100"]
    code, _, err = cli("budgets", "create", "prod-cap", *options)

    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "pause_at" in lines[0]
    assert "tag env=prod cannot be paused" in lines[0]
    assert "Traceback" not in err


def test_a_budget_without_a_pause_threshold_shows_none(cli: Cli, capstan: Capstan) -> None:
    cli.local(capstan)

    created = cli.json("budgets", "create", "org-cap", "--scope", "org", "--limit-usd", "12.50")

    assert (created["pause_at"], created["thresholds"]) == (None, [50, 80, 100])
