"""The Anthropic dialect through the official SDK: async and streaming, betas passed through,
token counting, and errors as the SDK's own exception classes."""

from __future__ import annotations

import asyncio

import anthropic
import httpx
import pytest

from tests.gateway.setup import DEPLOYMENTS, GatewayUnderTest

CLAUDE = DEPLOYMENTS["anthropic"]
HELLO = [{"role": "user", "content": "hello from the anthropic sdk"}]


def test_the_async_client_streams(gateway: GatewayUnderTest) -> None:
    async def call() -> str:
        async with (
            anthropic.AsyncAnthropic(
                base_url=gateway.url, api_key=gateway.key, max_retries=0
            ) as sdk,
            sdk.messages.stream(model=CLAUDE, max_tokens=100, messages=HELLO) as stream,
        ):
            return "".join([text async for text in stream.text_stream])

    assert asyncio.run(call()).startswith("Echo: hello from the anthropic sdk.")


def test_the_beta_header_and_system_blocks_reach_an_anthropic_upstream(
    gateway: GatewayUnderTest, anthropic_client: anthropic.Anthropic
) -> None:
    anthropic_client.messages.create(
        model=CLAUDE,
        max_tokens=50,
        system=[{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        messages=HELLO,
        extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"},
    )
    received = httpx.get(f"{gateway.simulator}/_sim/requests", timeout=5).json()[-1]
    assert received["path"] == "/v1/messages"
    assert received["headers"]["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert received["body"]["system"][0]["cache_control"] == {"type": "ephemeral"}


def test_extended_thinking_passes_through_natively(anthropic_client: anthropic.Anthropic) -> None:
    message = anthropic_client.messages.create(
        model=CLAUDE,
        max_tokens=3000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=HELLO,
    )
    assert message.content[0].type == "thinking"
    assert message.content[0].signature


def test_count_tokens_is_exact_for_anthropic_and_estimated_elsewhere(
    gateway: GatewayUnderTest, anthropic_client: anthropic.Anthropic
) -> None:
    counted = anthropic_client.messages.count_tokens(model=CLAUDE, messages=HELLO)
    assert counted.input_tokens == len(HELLO[0]["content"].split())
    response = httpx.post(
        f"{gateway.url}/v1/messages/count_tokens",
        json={"model": DEPLOYMENTS["openai"], "messages": HELLO},
        headers={"x-api-key": gateway.key, "anthropic-version": "2023-06-01"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["x-capstan-estimated"] == "true"
    assert response.json()["input_tokens"] > 0


def test_an_unknown_key_is_an_authentication_error(gateway: GatewayUnderTest) -> None:
    with (
        anthropic.Anthropic(base_url=gateway.url, api_key="cap_nope", max_retries=0) as sdk,
        pytest.raises(anthropic.AuthenticationError),
    ):
        sdk.messages.create(model=CLAUDE, max_tokens=10, messages=HELLO)


def test_an_unknown_model_is_a_not_found_error(anthropic_client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError):
        anthropic_client.messages.create(model="nope", max_tokens=10, messages=HELLO)


@pytest.mark.parametrize(
    "body",
    [
        {"model": CLAUDE, "messages": HELLO},
        {"model": CLAUDE, "max_tokens": 10, "messages": []},
        {"model": CLAUDE, "max_tokens": 10, "messages": [{"role": "system", "content": "x"}]},
        {"model": CLAUDE, "max_tokens": "ten", "messages": HELLO},
    ],
)
def test_bad_input_is_a_400_in_anthropic_shape(
    gateway: GatewayUnderTest, body: dict[str, object]
) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/messages",
        json=body,
        headers={"x-api-key": gateway.key, "anthropic-version": "2023-06-01"},
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_an_upstream_rate_limit_is_a_rate_limit_error(
    gateway: GatewayUnderTest, anthropic_client: anthropic.Anthropic
) -> None:
    httpx.put(
        f"{gateway.simulator}/_sim/faults",
        json={"model": "claude-simulated", "burst_429": 5},
    ).raise_for_status()
    with pytest.raises(anthropic.RateLimitError):
        anthropic_client.messages.create(model=CLAUDE, max_tokens=10, messages=HELLO)


def test_an_upstream_outage_is_a_server_error_in_anthropic_shape(
    gateway: GatewayUnderTest, anthropic_client: anthropic.Anthropic
) -> None:
    httpx.put(
        f"{gateway.simulator}/_sim/faults",
        json={"model": "gemini-2.0-flash", "error_rate": 1.0, "error_status": 500},
    ).raise_for_status()
    with pytest.raises(anthropic.InternalServerError):
        anthropic_client.messages.create(model=DEPLOYMENTS["gemini"], max_tokens=10, messages=HELLO)


def test_a_stream_cut_after_its_first_bytes_ends_with_an_error_event(
    gateway: GatewayUnderTest,
) -> None:
    httpx.put(
        f"{gateway.simulator}/_sim/faults",
        json={"model": "gpt-4o-mini", "cut_after_chunks": 3},
    ).raise_for_status()
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/messages",
        json={"model": DEPLOYMENTS["openai"], "max_tokens": 100, "messages": HELLO, "stream": True},
        headers={"x-api-key": gateway.key, "anthropic-version": "2023-06-01"},
        timeout=10,
    ) as response:
        body = response.read().decode()
    assert response.status_code == 200
    assert "event: content_block_delta" in body
    assert body.rstrip().splitlines()[-2] == "event: error"


def test_the_anthropic_sdk_lists_and_retrieves_models_in_its_own_shape(
    anthropic_client: anthropic.Anthropic,
) -> None:
    ids = [model.id for model in anthropic_client.models.list()]
    assert CLAUDE in ids
    assert "chat-default" in ids
    model = anthropic_client.models.retrieve("chat-default")
    assert model.type == "model"
    assert model.display_name == "chat-default"
    with pytest.raises(anthropic.NotFoundError):
        anthropic_client.models.retrieve("nope")
