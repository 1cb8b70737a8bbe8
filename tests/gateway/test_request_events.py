"""Every data-plane request leaves exactly one request event, under the `x-capstan-request-id`
its client got: served, failed, refused and streamed alike; payloads only when the project asks;
and the counters on `/metrics` and `/readyz` agree."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from tests.gateway.setup import DEPLOYMENTS, GatewayUnderTest, request_event

OPENAI = DEPLOYMENTS["openai"]


@pytest.fixture
def http(gateway: GatewayUnderTest) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {gateway.key}"}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as client:
        yield client


def chat(http: httpx.Client, model: str = OPENAI, **extra: Any) -> httpx.Response:
    headers = extra.pop("headers", {})
    body = {"model": model, "messages": [{"role": "user", "content": "hello there"}], **extra}
    return http.post("/v1/chat/completions", json=body, headers=headers)


def test_a_served_request_leaves_an_event_under_its_request_id(http: httpx.Client) -> None:
    response = chat(http)

    recorded = request_event(http, response.headers["x-capstan-request-id"])

    assert recorded["route"] == "chat.completions"
    assert recorded["model"] == OPENAI
    assert recorded["deployment"] == OPENAI
    assert recorded["provider"] == "sim-openai"
    assert recorded["upstream_model"] == "gpt-4o-mini"
    assert recorded["status"] == 200
    assert recorded["error_type"] is None
    assert recorded["attempts"] == 1
    usage = response.json()["usage"]
    assert recorded["prompt_tokens"] == usage["prompt_tokens"]
    assert recorded["completion_tokens"] == usage["completion_tokens"]
    assert recorded["latency_ms"] > 0
    assert recorded["key_id"] is not None


def test_a_request_for_an_unknown_model_leaves_a_failed_event(http: httpx.Client) -> None:
    response = chat(http, "no-such-model")

    recorded = request_event(http, response.headers["x-capstan-request-id"])

    assert response.status_code == 404
    assert recorded["status"] == 404
    assert recorded["error_type"] == "model_not_found"
    assert recorded["deployment"] is None


def test_a_request_with_a_bad_key_leaves_an_event_without_a_key(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers={"Authorization": "Bearer cap_" + "x" * 43},
        json={"model": OPENAI, "messages": [{"role": "user", "content": "hi"}]},
    )

    recorded = request_event(http, response.headers["x-capstan-request-id"])

    assert recorded["status"] == 401
    assert recorded["error_type"] == "invalid_api_key"
    assert recorded["key_id"] is None


def test_tags_come_from_the_header_and_the_metadata(http: httpx.Client) -> None:
    response = chat(
        http,
        metadata={"feature": "search", "ticket": "T-1"},
        headers={"x-capstan-tags": "env=prod, feature=chat"},
    )

    recorded = request_event(http, response.headers["x-capstan-request-id"])

    assert recorded["tags"] == {"feature": "chat", "ticket": "T-1", "env": "prod"}


def test_events_can_be_filtered_by_tag(http: httpx.Client) -> None:
    marker = uuid.uuid4().hex
    response = chat(http, headers={"x-capstan-tags": f"run={marker}"})
    request_event(http, response.headers["x-capstan-request-id"])

    found = http.get("/api/v1/requests", params={"tag": f"run={marker}"}).json()["items"]

    assert [e["id"] for e in found] == [response.headers["x-capstan-request-id"]]


def test_payloads_are_not_kept_by_default(http: httpx.Client) -> None:
    response = chat(http)

    recorded = request_event(http, response.headers["x-capstan-request-id"])

    assert recorded["payload"] is None


def logging_project_key(http: httpx.Client) -> dict[str, Any]:
    """A service key of a new project that logs payloads."""
    suffix = uuid.uuid4().hex[:8]
    http.post("/api/v1/departments", json={"name": f"d-{suffix}"}).raise_for_status()
    team = {"name": f"t-{suffix}", "department": f"d-{suffix}"}
    http.post("/api/v1/teams", json=team).raise_for_status()
    project = {"name": f"p-{suffix}", "team": f"t-{suffix}", "log_payloads": True}
    http.post("/api/v1/projects", json=project).raise_for_status()
    key = http.post("/api/v1/keys", json={"role": "service", "project": f"p-{suffix}"})
    issued: dict[str, Any] = key.json()
    return issued


def as_analyst(http: httpx.Client) -> None:
    """Admins may not read payloads; analysts may."""
    analyst = http.post("/api/v1/keys", json={"role": "analyst"}).json()["key"]
    http.headers["Authorization"] = f"Bearer {analyst}"


def test_payloads_are_kept_when_the_project_opts_in(http: httpx.Client) -> None:
    key = logging_project_key(http)

    response = chat(http, headers={"Authorization": f"Bearer {key['key']}"})

    as_analyst(http)
    recorded = request_event(http, response.headers["x-capstan-request-id"])
    assert recorded["payload"]["request"]["messages"][0]["content"] == "hello there"
    answer = response.json()["choices"][0]["message"]["content"]
    assert recorded["payload"]["response"]["choices"][0]["message"]["content"] == answer
    assert recorded["project_id"] == key["project_id"]


def test_a_streamed_answer_is_kept_as_its_text(http: httpx.Client) -> None:
    key = logging_project_key(http)
    body = {"model": OPENAI, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {key['key']}"}
    with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: {")]
    pieces = [
        choice["delta"].get("content") or ""
        for line in lines
        for choice in orjson.loads(line[6:]).get("choices", [])
    ]

    as_analyst(http)
    recorded = request_event(http, response.headers["x-capstan-request-id"])

    assert recorded["payload"]["response"] == {"text": "".join(pieces)}
    assert recorded["payload"]["response"]["text"]


def test_a_stream_leaves_its_usage_and_time_to_first_byte(http: httpx.Client) -> None:
    body = {"model": OPENAI, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        response.read()

    recorded = request_event(http, response.headers["x-capstan-request-id"])

    assert recorded["stream"] is True
    assert recorded["status"] == 200
    assert recorded["prompt_tokens"] > 0
    assert recorded["completion_tokens"] > 0
    assert 0 < recorded["ttft_ms"] <= recorded["latency_ms"]


def test_a_stream_cut_half_way_is_recorded_as_cut(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    httpx.put(
        f"{gateway.simulator}/_sim/faults", json={"model": "gpt-4o-mini", "cut_after_chunks": 2}
    )
    body = {
        "model": OPENAI,
        "stream": True,
        "messages": [{"role": "user", "content": "tell me a long story about the sea"}],
    }
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        text = response.read().decode()

    recorded = request_event(http, response.headers["x-capstan-request-id"])

    assert '"error"' in text.strip().splitlines()[-1]
    assert recorded["status"] == 200
    assert recorded["error_type"] == "stream_cut"


def test_an_anthropic_client_call_leaves_anthropic_usage_in_openai_terms(
    gateway: GatewayUnderTest, http: httpx.Client, anthropic_client: anthropic.Anthropic
) -> None:
    raw = anthropic_client.messages.with_raw_response.create(
        model=DEPLOYMENTS["anthropic"],
        max_tokens=50,
        messages=[{"role": "user", "content": "hello"}],
    )
    message = raw.parse()

    recorded = request_event(http, raw.headers["x-capstan-request-id"])

    assert recorded["route"] == "messages"
    assert recorded["prompt_tokens"] == message.usage.input_tokens
    assert recorded["completion_tokens"] == message.usage.output_tokens


def test_metrics_need_a_key(gateway: GatewayUnderTest) -> None:
    assert httpx.get(f"{gateway.url}/metrics").status_code == 401


def test_metrics_count_requests_and_report_no_dropped_events(http: httpx.Client) -> None:
    chat(http)

    text = http.get("/metrics").text

    assert (
        f'capstan_requests_total{{deployment="{OPENAI}",route="chat.completions",status="200"}}'
        in text
    )
    assert "capstan_events_dropped_total 0.0" in text
    assert "capstan_events_waiting" in text


def test_readiness_reports_the_event_pipeline(http: httpx.Client) -> None:
    checks = http.get("/readyz").json()["checks"]

    assert checks["events"]["dropped"] == 0
    assert checks["events"]["waiting"] >= 0
