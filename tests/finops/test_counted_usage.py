"""Calls whose provider reported no usage are priced from tokens Capstan counts itself with the
model family's tokenizer, marked estimated; without a tokenizer, the reservation stands."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from capstan.finops.counted_usage import counted_usage, reply_text
from capstan.finops.encodings import preload, ready
from capstan.finops.tokens import count_text_tokens, count_tokens
from tests.finops.test_budget_enforcement import DEPLOYMENT, create_budget, priced
from tests.gateway.setup import GatewayUnderTest, request_event, start_gateway

BODY: dict[str, Any] = {"messages": [{"role": "user", "content": "tell me about the sea"}]}


@pytest.fixture(scope="module", autouse=True)
def _encodings() -> None:
    preload("o200k_base")


def test_a_chat_models_prompt_and_output_are_counted() -> None:
    usage = counted_usage("gpt-4o-mini", BODY, "The sea is wide.", 16_384)

    assert usage is not None
    assert usage.prompt_tokens == count_tokens("gpt-4o-mini", BODY)
    assert usage.completion_tokens == count_text_tokens("gpt-4o-mini", "The sea is wide.")


def test_a_reasoning_models_output_is_taken_at_its_cap() -> None:
    usage = counted_usage("o3-mini", BODY, "short", 4_000)

    assert usage is not None
    assert usage.completion_tokens == 4_000


def test_a_family_without_an_offline_tokenizer_is_not_counted() -> None:
    assert counted_usage("claude-3-5-haiku", BODY, "text", 100) is None


def test_a_reply_with_no_text_is_left_to_the_callers_estimate() -> None:
    assert counted_usage("gpt-4o-mini", BODY, "", 100) is None


def test_reply_text_reads_openai_and_anthropic_replies() -> None:
    openai_reply = {"choices": [{"message": {"content": "hi there"}}]}
    anthropic_reply = {
        "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "you"}]
    }

    assert reply_text(openai_reply) == "hi there"
    assert reply_text(anthropic_reply) == "hi you"
    assert reply_text(None) == ""


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayUnderTest]:
    for running in start_gateway(tmp_path, events_flush_interval_s=0.1):
        priced(running)
        yield running


def cut_stream(gateway: GatewayUnderTest, content: str) -> tuple[str, str]:
    """A stream the upstream cuts after three chunks: its request id and the text received."""
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key, max_retries=0)
    with client.chat.completions.with_streaming_response.create(
        model=DEPLOYMENT,
        messages=[{"role": "user", "content": content}],
        max_tokens=50,
        stream=True,
    ) as response:
        request_id = response.headers["x-capstan-request-id"]
        received = []
        for line in response.iter_lines():
            if line.startswith("data: {") and '"error"' not in line:
                chunk = openai.types.chat.ChatCompletionChunk.model_validate_json(line[6:])
                received.extend(c.delta.content or "" for c in chunk.choices)
    return request_id, "".join(received)


def test_a_cut_stream_is_priced_from_the_tokens_counted_and_marked_estimated(
    gateway: GatewayUnderTest,
) -> None:
    create_budget(gateway, action="block", limit_usd="10")
    put = httpx.put(
        f"{gateway.simulator}/_sim/faults", json={"model": "gpt-4o-mini", "cut_after_chunks": 3}
    )
    assert put.status_code < 300, put.text
    content = "tell me a long story about the sea"
    deadline = time.monotonic() + 20
    while True:  # a gateway that had no tokenizer loaded yet charges the reservation meanwhile
        request_id, received = cut_stream(gateway, content)
        with gateway.admin() as admin:
            event = request_event(admin, request_id)
        if event["prompt_tokens"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.5)

    body = {"messages": [{"role": "user", "content": content}], "max_tokens": 50}
    assert ready("o200k_base")
    assert event["prompt_tokens"] == count_tokens("gpt-4o-mini", body)
    assert event["completion_tokens"] == count_text_tokens("gpt-4o-mini", received)
    assert event["cost_micros"] == event["completion_tokens"] * 1_000  # 1,000 USD per M out
    assert event["cost_estimated"] is True
