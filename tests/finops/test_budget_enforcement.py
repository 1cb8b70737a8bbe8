"""Budgets enforced by the gateway: reserved before the call, settled after it, so concurrent
requests (and gateways sharing Redis) never spend past a `block` limit.

Prices are set so that a call costs exactly what it may cost at most: output at 1,000 USD per
million tokens and free input, with `max_tokens` 5 (the simulator stops at the limit), so each
call costs 5,000 µ$ and reserves 5,002 µ$ (the bound adds 2 µ$ for rounding).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from capstan.finops.money import parse_usd
from tests.databases import require_redis
from tests.gateway.setup import GatewayUnderTest, request_event, start_gateway
from tests.servers import start_asgi, start_server

DEPLOYMENT = "gpt-4o-mini@sim-openai"
CHEAP = "claude-haiku@sim-anthropic"
CALL_COST = 5_000  # micro-dollars: 5 output tokens at 1,000 USD per million
FITS = 50
LIMIT_USD = "0.252"  # 50 calls and change: 50 reservations of 5,002 fit, 51 do not


@dataclass
class Outcome:
    request_id: str
    status: int
    body: dict[str, Any]
    headers: httpx.Headers


def priced(gateway: GatewayUnderTest) -> None:
    with gateway.admin() as admin:
        response = admin.post(
            "/api/v1/prices",
            json={
                "target_kind": "deployment",
                "target": DEPLOYMENT,
                "prices": {"input": "0", "output": "1000"},
            },
        )
        assert response.status_code == 201, response.text


def create_budget(gateway: GatewayUnderTest, **fields: object) -> dict[str, Any]:
    body: dict[str, object] = {"name": f"b-{uuid.uuid4().hex[:8]}", "scope": "org"}
    body |= {"period": "monthly", "limit_usd": LIMIT_USD, **fields}
    with gateway.admin() as admin:
        response = admin.post("/api/v1/budgets", json=body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
    time.sleep(0.3)  # every replica reloads its rules within the config poll interval
    return created


async def call_many(
    urls: list[str], key: str, count: int, model: str = DEPLOYMENT
) -> list[Outcome]:
    clients = [openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0) for url in urls]

    async def one(index: int) -> Outcome:
        chat = clients[index % len(clients)].chat.completions
        try:
            raw = await chat.with_raw_response.create(
                model=model,
                messages=[{"role": "user", "content": f"tell me a long story {index}"}],
                max_tokens=5,
            )
        except openai.APIStatusError as exc:
            return Outcome(
                exc.response.headers["x-capstan-request-id"],
                exc.status_code,
                exc.response.json(),
                exc.response.headers,
            )
        return Outcome(
            raw.headers["x-capstan-request-id"],
            raw.status_code,
            raw.parse().model_dump(),
            raw.headers,
        )

    try:
        return await asyncio.gather(*(one(i) for i in range(count)))
    finally:
        for client in clients:
            await client.close()


def recorded_cost(gateway: GatewayUnderTest, outcomes: list[Outcome]) -> int:
    with gateway.admin() as admin:
        return sum(
            request_event(admin, outcome.request_id)["cost_micros"] or 0 for outcome in outcomes
        )


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayUnderTest]:
    for running in start_gateway(tmp_path, events_flush_interval_s=0.1):
        priced(running)
        yield running


def test_concurrent_requests_never_spend_past_a_block_budget(gateway: GatewayUnderTest) -> None:
    create_budget(gateway, action="block")

    outcomes = asyncio.run(call_many([gateway.url], gateway.key, 200))

    served = [o for o in outcomes if o.status == 200]
    refused = [o for o in outcomes if o.status != 200]
    assert len(served) == FITS
    assert {o.status for o in refused} == {429}
    assert {o.body["error"]["code"] for o in refused} == {"budget_exceeded"}
    assert recorded_cost(gateway, served) == FITS * CALL_COST <= parse_usd(LIMIT_USD)


def test_a_refusal_names_the_budget_its_scope_and_the_amounts(gateway: GatewayUnderTest) -> None:
    created = create_budget(gateway, action="block", limit_usd="0.004")

    [outcome] = asyncio.run(call_many([gateway.url], gateway.key, 1))

    assert outcome.status == 429
    message = outcome.body["error"]["message"]
    assert created["name"] in message
    assert "organization" in message
    assert "0.004" in message


def test_two_gateways_sharing_redis_never_spend_past_a_block_budget(tmp_path: Path) -> None:
    redis_url = require_redis()
    for first in start_gateway(tmp_path, events_flush_interval_s=0.1, redis_url=redis_url):
        priced(first)
        second = start_server(first.settings)
        try:
            create_budget(first, action="block")

            outcomes = asyncio.run(call_many([first.url, second.url], first.key, 200))

            served = [o for o in outcomes if o.status == 200]
            assert len(served) == FITS
            assert {o.body["error"]["code"] for o in outcomes if o.status != 200} == {
                "budget_exceeded"
            }
            assert recorded_cost(first, served) <= parse_usd(LIMIT_USD)
        finally:
            second.stop()


def test_a_downgrade_budget_at_its_limit_sends_calls_to_the_cheaper_alias(
    gateway: GatewayUnderTest,
) -> None:
    with gateway.admin() as admin:
        response = admin.post(
            "/api/v1/config/apply",
            json={
                "document": "aliases:\n  - name: cheap\n    targets: [{deployment: "
                + CHEAP
                + "}]\n",
                "prune": False,
            },
        )
        assert response.status_code == 200, response.text
    create_budget(gateway, action="downgrade", downgrade_to="cheap", limit_usd="0.004")

    [outcome] = asyncio.run(call_many([gateway.url], gateway.key, 1))

    assert outcome.status == 200
    assert outcome.headers["x-capstan-budget-downgrade"] == "cheap"
    assert outcome.headers["x-capstan-deployment"] == CHEAP


def test_an_alert_only_budget_never_refuses(gateway: GatewayUnderTest) -> None:
    create_budget(gateway, action="alert-only", limit_usd="0.004")

    outcomes = asyncio.run(call_many([gateway.url], gateway.key, 3))

    assert [o.status for o in outcomes] == [200, 200, 200]


def test_a_served_call_records_its_cost_from_the_usage_and_the_price(
    gateway: GatewayUnderTest,
) -> None:
    [outcome] = asyncio.run(call_many([gateway.url], gateway.key, 1))

    with gateway.admin() as admin:
        event = request_event(admin, outcome.request_id)
    assert event["completion_tokens"] == 5
    assert event["cost_micros"] == CALL_COST
    assert event["cost_output_micros"] == CALL_COST
    assert event["cost_input_micros"] == 0
    assert event["cost_estimated"] is False


def test_budgets_are_listed_with_what_was_spent_in_the_period(gateway: GatewayUnderTest) -> None:
    created = create_budget(gateway, action="block")
    asyncio.run(call_many([gateway.url], gateway.key, 3))
    time.sleep(0.2)  # settlement runs just after the response

    with gateway.admin() as admin:
        listed = admin.get("/api/v1/budgets").json()

    [found] = [b for b in listed if b["id"] == created["id"]]
    assert found["spent_usd"] == "0.015"
    assert found["reserved_usd"] == "0.00"
    assert found["limit_usd"] == "0.252"


def test_a_restarted_gateway_remembers_what_was_spent(tmp_path: Path) -> None:
    for gateway in start_gateway(tmp_path, events_flush_interval_s=0.1):
        priced(gateway)
        created = create_budget(gateway, action="block", limit_usd="0.012")
        first = asyncio.run(call_many([gateway.url], gateway.key, 2))
        assert [o.status for o in first] == [200, 200]
        recorded_cost(gateway, first)  # both events are in the store
        restarted = start_server(gateway.settings)
        try:
            later = asyncio.run(call_many([restarted.url], gateway.key, 2))
            with httpx.Client(
                base_url=restarted.url, headers={"Authorization": f"Bearer {gateway.key}"}
            ) as admin:
                found = admin.get(f"/api/v1/budgets/{created['id']}").json()
        finally:
            restarted.stop()
        # 10,000 µ$ spent before the restart leaves room for none of 5,002 under 12,000.
        assert [o.status for o in later] == [429, 429]
        assert found["spent_usd"] == "0.01"


class Receiver:
    """A webhook endpoint on loopback that keeps what it was sent."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.received.append(orjson.loads(body))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def test_thresholds_are_posted_once_each_to_the_webhook(tmp_path: Path) -> None:
    receiver = Receiver()
    hook = start_asgi(receiver)
    try:
        for gateway in start_gateway(
            tmp_path, events_flush_interval_s=0.1, budget_webhook_url=f"{hook.url}/alerts"
        ):
            priced(gateway)
            created = create_budget(gateway, action="alert-only", limit_usd="0.02")

            asyncio.run(call_many([gateway.url], gateway.key, 5))  # 5 x 0.005 USD of 0.02

            deadline = time.monotonic() + 10
            while len(receiver.received) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.2)  # nothing more arrives
    finally:
        hook.stop()

    assert [r["threshold_percent"] for r in receiver.received] == [50, 80, 100]
    assert {r["budget"] for r in receiver.received} == {created["name"]}
    assert created["name"] in receiver.received[0]["text"]


def test_counting_tokens_is_free_even_at_a_block_limit(gateway: GatewayUnderTest) -> None:
    create_budget(gateway, action="block", limit_usd="0.004")
    client = anthropic.Anthropic(base_url=gateway.url, api_key=gateway.key, max_retries=0)

    counted = client.messages.count_tokens(
        model=DEPLOYMENT, messages=[{"role": "user", "content": "how many tokens is this?"}]
    )

    assert counted.input_tokens > 0


def test_without_its_counter_store_a_block_budget_refuses_and_the_gateway_stays_up(
    tmp_path: Path,
) -> None:
    closed = "redis://127.0.0.1:9/0"  # the discard port: nothing listens
    for gateway in start_gateway(tmp_path, redis_url=closed, config_poll_interval=0.1):
        priced(gateway)
        create_budget(gateway, action="block", limit_usd="10")
        time.sleep(0.5)

        [outcome] = asyncio.run(call_many([gateway.url], gateway.key, 1))

        assert outcome.status == 503
        assert outcome.body["error"]["code"] == "budget_store_unavailable"
        with gateway.admin() as admin:
            assert admin.get("/api/v1/budgets").status_code == 200


def test_a_price_entered_late_reprices_past_calls_with_an_audit_entry(
    gateway: GatewayUnderTest,
) -> None:
    [outcome] = asyncio.run(call_many([gateway.url], gateway.key, 1))
    with gateway.admin() as admin:
        before = request_event(admin, outcome.request_id)
        assert before["cost_micros"] == CALL_COST
        late = admin.post(
            "/api/v1/prices",
            json={
                "target_kind": "deployment",
                "target": DEPLOYMENT,
                "prices": {"input": "0", "output": "2000"},
                # In force from the call's arrival on, entered after the call.
                "effective_from": before["created_at"],
            },
        )
        assert late.status_code == 201, late.text

        done = admin.post("/api/v1/prices/recompute", json={"since": before["created_at"]})
        after = request_event(admin, outcome.request_id)
        audit = admin.get("/api/v1/audit", params={"action": "prices.recompute"}).json()

    assert done.status_code == 200, done.text
    assert done.json()["changed"] == 1
    assert after["cost_micros"] == 2 * CALL_COST
    assert [e["action"] for e in audit["items"]][-1:] == ["prices.recompute"]
