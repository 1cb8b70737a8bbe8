"""The simulator's Anthropic wire, below the SDK: every streamed event carries an `event:` line,
refusals and injected faults come with Anthropic's status, error body and headers, and what it
sends validates against Anthropic's published OpenAPI document."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import pytest

from tests.anthropic_spec import validate_anthropic
from tests.servers import RunningServer
from tests.simulator_fixtures import ANTHROPIC_TIME_TOOL as TIME
from tests.simulator_fixtures import ANTHROPIC_WEATHER_TOOL as WEATHER
from tests.simulator_fixtures import anthropic_sdk, set_faults, user

MODEL = "claude-simulated"  # not a real model: the SDK warns about deprecated real ones
HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}


def test_every_streamed_event_has_an_event_line(simulator: RunningServer) -> None:
    body = {"model": MODEL, "max_tokens": 32, "stream": True, "messages": user("lines")}
    response = httpx.post(f"{simulator.url}/v1/messages", headers=HEADERS, json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = [frame for frame in response.text.split("\n\n") if frame]
    assert all(frame.startswith("event: ") and "\ndata: " in frame for frame in frames)
    assert "event: ping" in response.text


def test_a_bad_key_raises_authentication_error(simulator: RunningServer) -> None:
    sdk = anthropic_sdk(simulator, api_key="bad-key")
    with pytest.raises(anthropic.AuthenticationError) as raised:
        sdk.messages.create(model=MODEL, max_tokens=16, messages=user("hi"))
    body: Any = raised.value.body
    assert body["error"]["type"] == "authentication_error"
    assert raised.value.response.headers["request-id"].startswith("req_")


def test_an_unknown_model_raises_not_found(anthropic_client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError):
        anthropic_client.messages.create(model="unknown-claude", max_tokens=16, messages=user("hi"))


def test_an_unknown_role_raises_bad_request(anthropic_client: anthropic.Anthropic) -> None:
    wizard: Any = [{"role": "wizard", "content": "hi"}]
    with pytest.raises(anthropic.BadRequestError, match="role"):
        anthropic_client.messages.create(model=MODEL, max_tokens=16, messages=wizard)


def test_empty_messages_raise_bad_request(anthropic_client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="at least one message"):
        anthropic_client.messages.create(model=MODEL, max_tokens=16, messages=[])


@pytest.mark.parametrize(
    ("headers", "body", "status", "message"),
    [
        ({"x-api-key": "sk-ant-test"}, {"max_tokens": 8}, 400, "anthropic-version"),
        (HEADERS, {}, 400, "max_tokens: Field required"),
        ({"anthropic-version": "2023-06-01"}, {"max_tokens": 8}, 401, "x-api-key"),
    ],
    ids=["no-version-header", "no-max-tokens", "no-key"],
)
def test_missing_essentials_are_refused(
    simulator: RunningServer,
    headers: dict[str, str],
    body: dict[str, Any],
    status: int,
    message: str,
) -> None:
    payload = {"model": MODEL, "messages": user("hi"), **body}
    response = httpx.post(f"{simulator.url}/v1/messages", headers=headers, json=payload)
    assert response.status_code == status
    error = response.json()
    assert error["type"] == "error"
    assert message in error["error"]["message"]
    assert response.headers["request-id"] == error["request_id"]


def test_a_rate_limit_fault_raises_rate_limit_error_with_headers(
    simulator: RunningServer, anthropic_client: anthropic.Anthropic
) -> None:
    set_faults(simulator, "claude-limited", burst_429=1, retry_after_s=3)
    with pytest.raises(anthropic.RateLimitError) as raised:
        anthropic_client.messages.create(model="claude-limited", max_tokens=16, messages=user("hi"))
    headers = raised.value.response.headers
    assert headers["retry-after"] == "3"
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    body: Any = raised.value.body
    assert body["error"]["type"] == "rate_limit_error"


def test_a_server_error_fault_raises_internal_server_error(
    simulator: RunningServer, anthropic_client: anthropic.Anthropic
) -> None:
    set_faults(simulator, "claude-broken", error_rate=1.0, error_status=500)
    with pytest.raises(anthropic.InternalServerError) as raised:
        anthropic_client.messages.create(model="claude-broken", max_tokens=16, messages=user("hi"))
    body: Any = raised.value.body
    assert body["error"]["type"] == "api_error"


def test_an_overloaded_fault_is_an_overloaded_error(
    simulator: RunningServer, anthropic_client: anthropic.Anthropic
) -> None:
    set_faults(simulator, "claude-busy", error_rate=1.0, error_status=529)
    with pytest.raises(anthropic.APIStatusError) as raised:
        anthropic_client.messages.create(model="claude-busy", max_tokens=16, messages=user("hi"))
    assert raised.value.status_code == 529
    body: Any = raised.value.body
    assert body["error"]["type"] == "overloaded_error"


def post_messages(simulator: RunningServer, **body: Any) -> httpx.Response:
    payload = {"model": MODEL, "max_tokens": 256, "messages": user("validate me"), **body}
    return httpx.post(f"{simulator.url}/v1/messages", headers=HEADERS, json=payload)


def test_a_text_message_matches_the_published_schema(simulator: RunningServer) -> None:
    validate_anthropic("Message", post_messages(simulator).json())


def test_a_tool_use_message_matches_the_published_schema(simulator: RunningServer) -> None:
    message = post_messages(simulator, tools=[WEATHER, TIME]).json()
    assert message["stop_reason"] == "tool_use"
    validate_anthropic("Message", message)


def test_stream_events_match_the_published_schema(simulator: RunningServer) -> None:
    response = post_messages(simulator, tools=[WEATHER], stream=True)
    events = [
        json.loads(line.removeprefix("data: "))
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]
    assert {event["type"] for event in events} >= {"message_start", "message_stop"}
    for event in events:
        if event["type"] != "ping":
            validate_anthropic("MessageStreamEvent", event)


@pytest.mark.parametrize(
    ("model", "status"),
    [("unknown-claude", 404), ("claude-limited-2", 429), ("claude-busy-2", 529)],
)
def test_errors_match_the_published_schema(
    simulator: RunningServer, model: str, status: int
) -> None:
    set_faults(simulator, "claude-limited-2", burst_429=1)
    set_faults(simulator, "claude-busy-2", error_rate=1.0, error_status=529)
    response = post_messages(simulator, model=model)
    assert response.status_code == status
    validate_anthropic("ErrorResponse", response.json())
