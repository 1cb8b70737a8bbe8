"""Rate limits enforced by the gateway: requests, tokens and USD per window, held before the
call like budgets, with OpenAI-style `x-ratelimit-*` headers and 429 + `Retry-After`."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anthropic
import openai
import pytest

from tests.databases import require_redis
from tests.finops.test_budget_enforcement import DEPLOYMENT, call_many, priced
from tests.gateway.setup import GatewayUnderTest, request_event, start_gateway
from tests.servers import start_server
from tests.test_cli import Cli


def create_limit(gateway: GatewayUnderTest, **fields: object) -> dict[str, Any]:
    body: dict[str, object] = {"name": f"rl-{uuid.uuid4().hex[:8]}", "scope": "model:" + DEPLOYMENT}
    body |= fields
    with gateway.admin() as admin:
        response = admin.post("/api/v1/rate-limits", json=body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
    time.sleep(0.3)  # every replica reloads its rules within the config poll interval
    return created


def own_key_id(gateway: GatewayUnderTest) -> str:
    """The id of the gateway's admin key, the only key there is."""
    with gateway.admin() as admin:
        response = admin.get("/api/v1/keys")
        assert response.status_code == 200, response.text
        [key] = response.json()["items"]
    return str(key["id"])


def sequential(gateway: GatewayUnderTest, count: int, **create: Any) -> list[Any]:
    """`count` calls one after the other: each outcome's status and headers."""
    outcomes = []
    for _ in range(count):
        outcomes.extend(asyncio.run(call_many([gateway.url], gateway.key, 1, **create)))
    return outcomes


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayUnderTest]:
    for running in start_gateway(tmp_path, events_flush_interval_s=0.1):
        priced(running)
        yield running


def test_requests_past_the_limit_are_refused_with_retry_after(gateway: GatewayUnderTest) -> None:
    created = create_limit(gateway, period="minute", requests=3)

    outcomes = sequential(gateway, 5)

    assert [o.status for o in outcomes] == [200, 200, 200, 429, 429]
    refused = outcomes[3]
    assert refused.body["error"]["code"] == "rate_limit_exceeded"
    assert refused.body["error"]["type"] == "rate_limit_error"
    assert created["name"] in refused.body["error"]["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"


def test_served_calls_carry_openai_style_rate_limit_headers(gateway: GatewayUnderTest) -> None:
    create_limit(gateway, period="minute", requests=10, tokens=100_000)

    first, second = sequential(gateway, 2)

    assert first.headers["x-ratelimit-limit-requests"] == "10"
    assert first.headers["x-ratelimit-remaining-requests"] == "9"
    assert second.headers["x-ratelimit-remaining-requests"] == "8"
    assert first.headers["x-ratelimit-limit-tokens"] == "100000"
    assert int(first.headers["x-ratelimit-remaining-tokens"]) < 100_000
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")


def test_a_call_whose_worst_case_passes_the_token_limit_is_refused_before_it_runs(
    gateway: GatewayUnderTest,
) -> None:
    create_limit(gateway, period="minute", tokens=1_000)
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key, max_retries=0)

    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(
            model=DEPLOYMENT, messages=[{"role": "user", "content": "hi"}], max_tokens=5_000
        )
    small = client.chat.completions.create(
        model=DEPLOYMENT, messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )

    assert refused.value.response.headers["x-ratelimit-limit-tokens"] == "1000"
    assert small.choices[0].message.content


def test_tokens_are_settled_to_what_the_call_used(gateway: GatewayUnderTest) -> None:
    created = create_limit(gateway, period="day", tokens=1_000_000)

    [outcome] = asyncio.run(call_many([gateway.url], gateway.key, 1))
    time.sleep(0.2)  # settlement runs just after the response

    with gateway.admin() as admin:
        event = request_event(admin, outcome.request_id)
        listed = admin.get(f"/api/v1/rate-limits/{created['id']}").json()
    used = event["prompt_tokens"] + event["completion_tokens"]
    assert listed["window"]["tokens"] == {"limit": "1000000", "used": str(used), "reserved": "0"}


def test_a_usd_limit_counts_the_cost_of_the_calls(gateway: GatewayUnderTest) -> None:
    # Each call costs 5,000 µ$ and reserves 5,002: two fit under 0.0105 USD, a third does not.
    create_limit(gateway, period="minute", limit_usd="0.0105")

    outcomes = sequential(gateway, 3)

    assert [o.status for o in outcomes] == [200, 200, 429]
    assert outcomes[0].headers["x-ratelimit-limit-usd"] == "0.0105"


def test_a_model_filter_limits_only_the_scopes_calls_to_that_model(
    gateway: GatewayUnderTest,
) -> None:
    create_limit(
        gateway,
        scope=f"key:{own_key_id(gateway)}",
        model="claude-haiku@sim-anthropic",
        period="minute",
        requests=1,
    )

    other = sequential(gateway, 2)
    limited = sequential(gateway, 2, model="claude-haiku@sim-anthropic")

    assert [o.status for o in other] == [200, 200]
    assert [o.status for o in limited] == [200, 429]


def test_concurrent_requests_never_pass_a_request_limit(gateway: GatewayUnderTest) -> None:
    create_limit(gateway, period="minute", requests=50)

    outcomes = asyncio.run(call_many([gateway.url], gateway.key, 200))

    assert sum(o.status == 200 for o in outcomes) == 50
    assert {o.body["error"]["code"] for o in outcomes if o.status != 200} == {"rate_limit_exceeded"}


def test_two_gateways_sharing_redis_share_a_request_limit(tmp_path: Path) -> None:
    redis_url = require_redis()
    for first in start_gateway(tmp_path, events_flush_interval_s=0.1, redis_url=redis_url):
        priced(first)
        second = start_server(first.settings)
        try:
            create_limit(first, period="minute", requests=50)

            outcomes = asyncio.run(call_many([first.url, second.url], first.key, 200))

            served = [o for o in outcomes if o.status == 200]
            assert len(served) == 50
            assert served[0].headers["x-ratelimit-limit-requests"] == "50"
        finally:
            second.stop()


def test_the_anthropic_route_refuses_in_its_own_dialect(gateway: GatewayUnderTest) -> None:
    create_limit(gateway, period="minute", requests=1)
    client = anthropic.Anthropic(base_url=gateway.url, api_key=gateway.key, max_retries=0)
    ask: dict[str, Any] = {
        "model": DEPLOYMENT,
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
    }

    served = client.messages.with_raw_response.create(**ask)
    with pytest.raises(anthropic.RateLimitError) as refused:
        client.messages.create(**ask)

    assert served.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.value.response.headers["retry-after"]


def test_a_rate_limit_without_any_cap_is_refused_as_a_problem(gateway: GatewayUnderTest) -> None:
    with gateway.admin() as admin:
        response = admin.post(
            "/api/v1/rate-limits", json={"name": "empty", "scope": "model:x", "period": "minute"}
        )

    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "at least one" in response.json()["detail"]


def test_rate_limits_are_created_listed_and_deleted_from_the_cli(
    gateway: GatewayUnderTest, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = Cli(capsys, monkeypatch).remote(SimpleNamespace(url=gateway.url), gateway.key)  # type: ignore[arg-type]

    code, out, err = cli(
        "ratelimits", "create", "per-minute", "--scope", f"model:{DEPLOYMENT}", "--requests", "60"
    )
    assert code == 0, err
    assert "created rate limit per-minute" in out
    [listed] = cli.json("ratelimits", "list")
    assert (listed["name"], listed["requests"], listed["period"]) == ("per-minute", 60, "minute")
    code, out, _ = cli("ratelimits", "delete", "per-minute")
    assert (code, out.strip()) == (0, "deleted rate limit per-minute")
    assert cli.json("ratelimits", "list") == []


def test_a_bad_scope_is_one_readable_cli_line(
    gateway: GatewayUnderTest, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = Cli(capsys, monkeypatch).remote(SimpleNamespace(url=gateway.url), gateway.key)  # type: ignore[arg-type]

    code, _, err = cli("ratelimits", "create", "x", "--scope", "org", "--requests", "1")

    assert code != 0
    assert "scope must be key:ID, project:NAME" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_without_its_counter_store_a_rate_limit_lets_calls_through(tmp_path: Path) -> None:
    closed = "redis://127.0.0.1:9/0"  # the discard port: nothing listens
    for gateway in start_gateway(tmp_path, redis_url=closed, config_poll_interval=0.1):
        priced(gateway)
        create_limit(gateway, period="minute", requests=1)
        time.sleep(0.5)

        outcomes = sequential(gateway, 2)

        assert [o.status for o in outcomes] == [200, 200]
