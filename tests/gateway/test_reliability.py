"""Reliability of a call, against the simulator's faults: retries with backoff inside the
deadline, `Retry-After`, fallbacks (errors, context-window overflow, content policy), circuit
breakers, concurrency limits and stream-aware failover.

Each scenario uses its own upstream model, so the faults of one cannot touch another."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.gateway.setup import GatewayUnderTest, request_event, start_gateway

COOLDOWN_S = 0.5
BREAKER_FAILURES = 3


def reliability_config(sim: str) -> str:
    def deployment(name: str, model: str, **extra: Any) -> str:
        fields = ", ".join(f"{k}: {v}" for k, v in extra.items())
        return (
            f"  - {{name: {name}, provider: sim, model: {model}{', ' + fields if fields else ''}}}"
        )

    deployments = "\n".join(
        [
            deployment("retry@sim", "retry-model"),
            deployment("rate-limited@sim", "rate-limited-model"),
            deployment("primary@sim", "primary-model"),
            deployment("backup@sim", "backup-model"),
            deployment("flaky@sim", "flaky-model", max_retries=0),
            deployment("hang@sim", "hang-model"),
            deployment("cut@sim", "cut-model"),
            deployment("stall@sim", "stall-model", stream_idle_timeout_s=0.3),
            deployment("small@sim", "gpt-4o-mini"),
            deployment("same@sim", "gpt-4o"),
            deployment("large@sim", "gpt-4.1"),
            deployment("refusing@sim", "refusing-model"),
            deployment("limited@sim", "limited-model", max_concurrency=1, max_retries=0),
            deployment("slow@sim", "slow-model"),
        ]
    )
    return f"""
providers:
  - {{name: sim, kind: openai, base_url: "{sim}/v1", api_key: sk-sim}}
deployments:
{deployments}
aliases:
  - {{name: chat-backup, targets: [{{deployment: backup@sim}}]}}
  - name: chat-primary
    targets: [{{deployment: primary@sim}}]
    fallbacks: [chat-backup]
  - name: chat-stall
    targets: [{{deployment: stall@sim}}]
    fallbacks: [chat-backup]
  - name: chat-context
    strategy: priority
    targets:
      - {{deployment: small@sim, priority: 0}}
      - {{deployment: same@sim, priority: 1}}
      - {{deployment: large@sim, priority: 2}}
  - name: chat-policy-fallback
    targets: [{{deployment: refusing@sim}}]
    fallbacks: [chat-backup]
    fallback_on_content_policy: true
  - name: chat-policy-strict
    targets: [{{deployment: refusing@sim}}]
    fallbacks: [chat-backup]
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayUnderTest]:
    yield from start_gateway(
        Path(tmp_path_factory.mktemp("reliability")),
        reliability_config,
        retry_backoff_s=0.05,
        breaker_failures=BREAKER_FAILURES,
        breaker_min_calls=1_000,
        breaker_cooldown_s=COOLDOWN_S,
        queue_factor=1.0,
    )


@pytest.fixture
def http(gateway: GatewayUnderTest) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {gateway.key}"}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as client:
        yield client


def fault(gateway: GatewayUnderTest, model: str, **faults: Any) -> None:
    response = httpx.put(f"{gateway.simulator}/_sim/faults", json={"model": model, **faults})
    assert response.status_code == 200, response.text


def calls_to(gateway: GatewayUnderTest, model: str) -> int:
    received = httpx.get(f"{gateway.simulator}/_sim/requests").json()
    return sum(1 for r in received if (r.get("body") or {}).get("model") == model)


def chat(http: httpx.Client, model: str, content: str = "hello", **headers: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    return http.post("/v1/chat/completions", json=body, headers=headers)


def test_a_failed_call_is_retried_and_then_succeeds(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    fault(gateway, "retry-model", fail_next=1, error_status=500)

    response = chat(http, "retry@sim")

    assert response.status_code == 200
    assert response.headers["x-capstan-attempts"] == "2"
    assert response.headers["x-capstan-deployment"] == "retry@sim"


def test_a_429_is_retried_after_its_retry_after(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    fault(gateway, "rate-limited-model", burst_429=1, retry_after_s=1)

    started = time.monotonic()
    response = chat(http, "rate-limited@sim")

    assert response.status_code == 200
    assert time.monotonic() - started >= 1.0
    assert response.headers["x-capstan-attempts"] == "2"


def test_a_retry_after_beyond_the_deadline_returns_the_429_at_once(
    gateway: GatewayUnderTest, openai_client: openai.OpenAI
) -> None:
    fault(gateway, "rate-limited-model", burst_429=1, retry_after_s=30)

    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as raised:
        openai_client.chat.completions.create(
            model="rate-limited@sim",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-capstan-timeout": "5"},
        )

    assert time.monotonic() - started < 2
    assert raised.value.response.headers["retry-after"] == "30"


def test_a_failing_primary_falls_back_to_the_fallback_alias(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    fault(gateway, "primary-model", error_rate=1.0, error_status=500)

    response = chat(http, "chat-primary")

    assert response.status_code == 200
    assert response.headers["x-capstan-deployment"] == "backup@sim"
    assert response.headers["x-capstan-attempts"] == "2"


def test_a_breaker_opens_after_repeated_failures_and_stops_calling_the_upstream(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    fault(gateway, "flaky-model", error_rate=1.0, error_status=500)
    for _ in range(BREAKER_FAILURES):
        assert chat(http, "flaky@sim").status_code == 502
    calls_before = calls_to(gateway, "flaky-model")

    refused = chat(http, "flaky@sim")

    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "circuit_open"
    assert int(refused.headers["retry-after"]) >= 1
    assert calls_to(gateway, "flaky-model") == calls_before


def test_an_open_breaker_half_opens_after_its_cooldown_and_closes_on_success(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    fault(gateway, "flaky-model", error_rate=1.0, error_status=500)
    for _ in range(BREAKER_FAILURES):
        chat(http, "flaky@sim")
    assert chat(http, "flaky@sim").status_code == 503
    httpx.delete(f"{gateway.simulator}/_sim/faults")

    time.sleep(COOLDOWN_S + 0.1)
    probe = chat(http, "flaky@sim")
    after = chat(http, "flaky@sim")

    assert probe.status_code == 200
    assert after.status_code == 200


def test_a_hung_upstream_ends_in_a_deadline_error_in_openai_shape(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    fault(gateway, "hang-model", hang=True)

    started = time.monotonic()
    response = chat(http, "hang@sim", **{"x-capstan-timeout": "1"})

    assert 1.0 <= time.monotonic() - started < 3
    assert response.status_code == 504
    error = response.json()["error"]
    assert error["code"] == "deadline_exceeded"
    assert error["type"] == "timeout_error"
    assert "1 s" in error["message"]


def test_a_bad_timeout_header_is_a_400(http: httpx.Client) -> None:
    response = chat(http, "retry@sim", **{"x-capstan-timeout": "soon"})

    assert response.status_code == 400
    assert "x-capstan-timeout" in response.json()["error"]["message"]


def test_a_stream_that_stalls_before_its_first_byte_fails_over(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    fault(gateway, "stall-model", ttft_ms=5_000)
    body = {"model": "chat-stall", "stream": True, "messages": [{"role": "user", "content": "x"}]}

    started = time.monotonic()
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        text = response.read().decode()

    assert response.status_code == 200
    assert response.headers["x-capstan-deployment"] == "backup@sim"
    assert time.monotonic() - started < 3
    assert text.rstrip().endswith("data: [DONE]")


def test_a_stream_cut_after_its_first_byte_ends_with_an_error_event(
    gateway: GatewayUnderTest, openai_client: openai.OpenAI
) -> None:
    fault(gateway, "cut-model", cut_after_chunks=2)

    stream = openai_client.chat.completions.create(
        model="cut@sim",
        messages=[{"role": "user", "content": "tell me a long story about the sea"}],
        stream=True,
    )
    with pytest.raises(openai.APIError) as raised:
        for _ in stream:
            pass

    assert "upstream" in raised.value.message


def test_a_context_overflow_falls_over_to_a_larger_context_window(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    fault(gateway, "gpt-4o-mini", context_window=5)
    fault(gateway, "gpt-4o", context_window=5)

    response = chat(http, "chat-context", "a prompt far longer than five tokens, surely")

    assert response.status_code == 200
    assert response.headers["x-capstan-deployment"] == "large@sim"
    # The same-sized window (gpt-4o, 128k like gpt-4o-mini) was not even tried.
    assert calls_to(gateway, "gpt-4o") == 0
    assert response.headers["x-capstan-attempts"] == "2"


def test_a_content_policy_refusal_falls_back_when_the_alias_says_so(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    fault(gateway, "refusing-model", refuse_content=True)

    response = chat(http, "chat-policy-fallback")

    assert response.status_code == 200
    assert response.headers["x-capstan-deployment"] == "backup@sim"


def test_a_content_policy_refusal_is_returned_when_the_alias_does_not_fall_back(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    fault(gateway, "refusing-model", refuse_content=True)

    response = chat(http, "chat-policy-strict")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "content_policy_violation"


def test_a_deployment_at_its_concurrency_limit_queues_then_answers_429(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    fault(gateway, "limited-model", latency_ms=600)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(chat, http, "limited@sim") for _ in range(3)]
        statuses = sorted(f.result().status_code for f in futures)

    # One runs, one waits in the queue (bound = limit * queue_factor = 1), one is refused.
    assert statuses == [200, 200, 429]


def test_a_client_that_leaves_mid_stream_cancels_the_upstream_call(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    fault(gateway, "slow-model", tokens_per_s=5)
    body = {
        "model": "slow@sim",
        "stream": True,
        "messages": [{"role": "user", "content": "a long story " * 20}],
    }

    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        next(response.iter_raw())  # the first bytes arrived; now hang up

    deadline = time.monotonic() + 5
    while httpx.get(f"{gateway.simulator}/_sim/stats").json()["streams_abandoned"] < 1:
        assert time.monotonic() < deadline, "the upstream stream was not closed"
        time.sleep(0.05)
    recorded = request_event(http, response.headers["x-capstan-request-id"])
    assert recorded["status"] == 499
    assert recorded["error_type"] == "client_closed"
