"""The simulator refuses what OpenAI refuses, with OpenAI's status, error body and headers, so that
the official SDK raises the same exception classes as against api.openai.com; injected faults
answer the same way."""

from __future__ import annotations

from typing import Any

import httpx
import httpx2
import openai
import pytest

from tests.openai_spec import WireRecorder, validate_openai, validate_openai_exchange
from tests.servers import RunningServer
from tests.simulator_fixtures import openai_sdk, set_faults, user


def test_a_temperature_out_of_range_is_a_bad_request(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client.chat.completions.create(model="gpt-4o", messages=user("hot"), temperature=3)
    assert raised.value.param == "temperature"


def test_retrieving_an_unlisted_model_is_not_found(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        openai_client.models.retrieve("no-such-model")


def test_a_bad_key_raises_authentication_error(
    simulator: RunningServer, recorder: WireRecorder
) -> None:
    sdk = openai_sdk(
        simulator, api_key="bad-key-123456", http_client=httpx2.Client(transport=recorder)
    )
    with pytest.raises(openai.AuthenticationError) as raised:
        sdk.chat.completions.create(model="gpt-4o", messages=user("hi"))
    validate_openai_exchange(recorder.last, "ErrorResponse")
    assert raised.value.code == "invalid_api_key"


def test_an_unknown_model_raises_not_found(
    openai_client: openai.OpenAI, recorder: WireRecorder
) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        openai_client.chat.completions.create(model="unknown-model", messages=user("hi"))
    validate_openai_exchange(recorder.last, "ErrorResponse")
    assert raised.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("messages", "param", "code"),
    [
        ([], "messages", "empty_array"),
        ([{"role": "wizard", "content": "hi"}], "messages[0].role", "invalid_value"),
        ([{"role": "user", "content": 42}], "messages[0].content", "invalid_type"),
        ([{"content": "hi"}], "messages[0].role", "missing_required_parameter"),
    ],
    ids=["empty", "unknown-role", "wrong-type", "missing-role"],
)
def test_invalid_messages_raise_bad_request(
    openai_client: openai.OpenAI,
    recorder: WireRecorder,
    messages: list[Any],
    param: str,
    code: str,
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client.chat.completions.create(model="gpt-4o", messages=messages)
    validate_openai_exchange(recorder.last, "ErrorResponse")
    assert raised.value.param == param
    assert raised.value.code == code


def test_a_missing_model_is_a_bad_request(simulator: RunningServer) -> None:
    response = httpx.post(
        f"{simulator.url}/v1/chat/completions",
        headers={"Authorization": "Bearer sk-test"},
        json={"messages": user("hi")},
    )
    assert response.status_code == 400
    validate_openai("ErrorResponse", response.json())


def test_a_prompt_over_the_context_window_is_refused(
    simulator: RunningServer, openai_client: openai.OpenAI
) -> None:
    set_faults(simulator, "gpt-small-window", context_window=5)
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client.chat.completions.create(
            model="gpt-small-window", messages=user("one two three four five six")
        )
    assert raised.value.code == "context_length_exceeded"


def test_a_rate_limit_fault_raises_rate_limit_error_with_headers(
    simulator: RunningServer, openai_client: openai.OpenAI, recorder: WireRecorder
) -> None:
    set_faults(simulator, "gpt-limited", burst_429=1, retry_after_s=2)
    with pytest.raises(openai.RateLimitError) as raised:
        openai_client.chat.completions.create(model="gpt-limited", messages=user("hi"))
    validate_openai_exchange(recorder.last, "ErrorResponse")
    headers = raised.value.response.headers
    assert headers["retry-after"] == "2"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert raised.value.code == "rate_limit_exceeded"
    assert raised.value.type == "requests"


def test_a_server_error_fault_raises_internal_server_error(
    simulator: RunningServer, openai_client: openai.OpenAI
) -> None:
    set_faults(simulator, "gpt-broken", error_rate=1.0, error_status=500)
    with pytest.raises(openai.InternalServerError) as raised:
        openai_client.chat.completions.create(model="gpt-broken", messages=user("hi"))
    assert raised.value.type == "server_error"
