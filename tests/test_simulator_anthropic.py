"""The upstream simulator speaks Anthropic's Messages API: the official SDK (sync, async, its
stream helpers) works against it, with tools, thinking, stop reasons, prompt caching and token
counting as Anthropic has them. Errors and the raw wire: `test_simulator_anthropic_wire.py`."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import jsonschema
import pytest

from tests.servers import RunningServer
from tests.simulator_fixtures import ANTHROPIC_TIME_TOOL as TIME
from tests.simulator_fixtures import ANTHROPIC_WEATHER_TOOL as WEATHER
from tests.simulator_fixtures import async_anthropic_sdk, user

MODEL = "claude-simulated"  # not a real model: the SDK warns about deprecated real ones
THINKING: Any = {"type": "enabled", "budget_tokens": 1024}


def test_a_message_echoes_the_prompt(anthropic_client: anthropic.Anthropic) -> None:
    message = anthropic_client.messages.create(
        model=MODEL, max_tokens=256, messages=user("hello claude")
    )
    assert message.id.startswith("msg_")
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == MODEL
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    block = message.content[0]
    assert block.type == "text"
    assert block.text.startswith("Echo: hello claude.")


def test_usage_counts_the_words_of_system_prompt_and_reply(
    anthropic_client: anthropic.Anthropic,
) -> None:
    message = anthropic_client.messages.create(
        model=MODEL,
        max_tokens=256,
        system=[{"type": "text", "text": "be brief"}],
        messages=user("count these four"),
    )
    assert message.usage.input_tokens == 2 + 3
    assert message.content[0].type == "text"
    assert message.usage.output_tokens == len(message.content[0].text.split())
    assert message.usage.cache_creation_input_tokens == 0
    assert message.usage.cache_read_input_tokens == 0


def test_the_async_client_gets_a_message(simulator: RunningServer) -> None:
    async def ask() -> anthropic.types.Message:
        async with async_anthropic_sdk(simulator) as sdk:
            return await sdk.messages.create(
                model=MODEL, max_tokens=64, messages=user("async hello")
            )

    message = asyncio.run(ask())
    assert message.content[0].type == "text"
    assert message.content[0].text.startswith("Echo: async hello.")


def test_the_stream_helper_accumulates_the_final_message(
    anthropic_client: anthropic.Anthropic,
) -> None:
    with anthropic_client.messages.stream(
        model=MODEL, max_tokens=256, messages=user("stream it")
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 3
    assert final.content[0].type == "text"
    assert "".join(pieces) == final.content[0].text
    assert final.content[0].text.startswith("Echo: stream it.")
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == len(final.content[0].text.split())
    assert final.usage.input_tokens == 2


def test_async_stream_helper_yields_text(simulator: RunningServer) -> None:
    async def collect() -> str:
        async with (
            async_anthropic_sdk(simulator) as sdk,
            sdk.messages.stream(
                model=MODEL, max_tokens=64, messages=user("async stream")
            ) as stream,
        ):
            return "".join([piece async for piece in stream.text_stream])

    assert asyncio.run(collect()).startswith("Echo: async stream.")


def test_raw_stream_events_come_in_anthropic_order(anthropic_client: anthropic.Anthropic) -> None:
    events = list(
        anthropic_client.messages.create(
            model=MODEL, max_tokens=64, messages=user("order"), stream=True
        )
    )
    kinds = [event.type for event in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-4:] == [
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0]
    assert start.type == "message_start"
    assert start.message.usage.output_tokens == 1
    delta = events[-2]
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "end_turn"


def test_auto_tool_choice_says_so_then_calls_the_first_two_tools(
    anthropic_client: anthropic.Anthropic,
) -> None:
    message = anthropic_client.messages.create(
        model=MODEL, max_tokens=256, tools=[WEATHER, TIME], messages=user("weather and time")
    )
    assert message.stop_reason == "tool_use"
    assert [block.type for block in message.content] == ["text", "tool_use", "tool_use"]
    calls = [block for block in message.content if block.type == "tool_use"]
    assert [call.name for call in calls] == ["get_weather", "get_time"]
    assert all(call.id.startswith("toolu_") for call in calls)
    jsonschema.validate(calls[0].input, WEATHER["input_schema"])


def test_disabling_parallel_tool_use_calls_one_tool(anthropic_client: anthropic.Anthropic) -> None:
    message = anthropic_client.messages.create(
        model=MODEL,
        max_tokens=256,
        tools=[WEATHER, TIME],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        messages=user("weather and time"),
    )
    assert [block.type for block in message.content] == ["tool_use"]


def test_a_named_tool_choice_calls_only_that_tool(anthropic_client: anthropic.Anthropic) -> None:
    message = anthropic_client.messages.create(
        model=MODEL,
        max_tokens=256,
        tools=[WEATHER, TIME],
        tool_choice={"type": "tool", "name": "get_time"},
        messages=user("time please"),
    )
    assert [(b.type, getattr(b, "name", None)) for b in message.content] == [
        ("tool_use", "get_time")
    ]


def test_tool_choice_none_answers_in_text(anthropic_client: anthropic.Anthropic) -> None:
    message = anthropic_client.messages.create(
        model=MODEL,
        max_tokens=256,
        tools=[WEATHER],
        tool_choice={"type": "none"},
        messages=user("just talk"),
    )
    assert message.stop_reason == "end_turn"
    assert [block.type for block in message.content] == ["text"]


def test_a_tool_result_gets_a_text_answer_echoing_it(anthropic_client: anthropic.Anthropic) -> None:
    first = anthropic_client.messages.create(
        model=MODEL, max_tokens=256, tools=[WEATHER], messages=user("weather in rome")
    )
    call = next(block for block in first.content if block.type == "tool_use")
    messages: Any = [
        *user("weather in rome"),
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": "hot and sunny"}
            ],
        },
    ]
    second = anthropic_client.messages.create(
        model=MODEL, max_tokens=256, tools=[WEATHER], messages=messages
    )
    assert second.stop_reason == "end_turn"
    assert second.content[0].type == "text"
    assert second.content[0].text.startswith("Echo: hot and sunny.")


def test_an_unanswered_tool_use_is_a_bad_request(anthropic_client: anthropic.Anthropic) -> None:
    messages: Any = [
        *user("weather"),
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}],
        },
        *user("well?"),
    ]
    with pytest.raises(anthropic.BadRequestError, match="toolu_1"):
        anthropic_client.messages.create(model=MODEL, max_tokens=64, messages=messages)


def test_streamed_tool_input_accumulates_into_the_final_message(
    anthropic_client: anthropic.Anthropic,
) -> None:
    with anthropic_client.messages.stream(
        model=MODEL,
        max_tokens=256,
        tools=[WEATHER],
        tool_choice={"type": "any"},
        messages=user("weather"),
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert "input_json" in kinds
    call = final.content[0]
    assert call.type == "tool_use"
    jsonschema.validate(call.input, WEATHER["input_schema"])
    assert final.stop_reason == "tool_use"


def test_thinking_comes_first_with_a_signature(anthropic_client: anthropic.Anthropic) -> None:
    message = anthropic_client.messages.create(
        model=MODEL, max_tokens=2048, thinking=THINKING, messages=user("think about it")
    )
    thinking, answer = message.content
    assert thinking.type == "thinking"
    assert thinking.thinking.startswith("Considering: think about it")
    assert thinking.signature
    assert answer.type == "text"
    assert message.usage.output_tokens == len(thinking.thinking.split()) + len(answer.text.split())


def test_thinking_streams_thinking_and_signature_deltas(
    anthropic_client: anthropic.Anthropic,
) -> None:
    with anthropic_client.messages.stream(
        model=MODEL, max_tokens=2048, thinking=THINKING, messages=user("think streaming")
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert "thinking" in kinds
    assert "signature" in kinds
    first = final.content[0]
    assert first.type == "thinking"
    assert first.signature


def test_a_thinking_budget_at_or_over_max_tokens_is_a_bad_request(
    anthropic_client: anthropic.Anthropic,
) -> None:
    with pytest.raises(anthropic.BadRequestError, match="budget_tokens"):
        anthropic_client.messages.create(
            model=MODEL, max_tokens=1024, thinking=THINKING, messages=user("hi")
        )


def test_a_stop_sequence_truncates_with_its_stop_reason(
    anthropic_client: anthropic.Anthropic,
) -> None:
    message = anthropic_client.messages.create(
        model=MODEL,
        max_tokens=256,
        stop_sequences=["gamma"],
        messages=user("alpha beta gamma delta"),
    )
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "gamma"
    assert message.content[0].type == "text"
    assert message.content[0].text == "Echo: alpha beta"


def test_max_tokens_truncates_with_its_stop_reason(anthropic_client: anthropic.Anthropic) -> None:
    message = anthropic_client.messages.create(
        model=MODEL, max_tokens=3, messages=user("long story")
    )
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 3


def test_a_cached_prefix_is_written_once_then_read(anthropic_client: anthropic.Anthropic) -> None:
    system: Any = [
        {
            "type": "text",
            "text": "a long and stable system prompt for caching",
            "cache_control": {"type": "ephemeral"},
        }
    ]

    def usage(question: str) -> anthropic.types.Usage:
        message = anthropic_client.messages.create(
            model="claude-cache-test", max_tokens=64, system=system, messages=user(question)
        )
        return message.usage

    first = usage("first question")
    assert (first.cache_creation_input_tokens, first.cache_read_input_tokens) == (8, 0)
    assert first.input_tokens == 2
    second = usage("another question here")
    assert (second.cache_creation_input_tokens, second.cache_read_input_tokens) == (0, 8)
    assert second.input_tokens == 3


def test_count_tokens_counts_the_whole_prompt(anthropic_client: anthropic.Anthropic) -> None:
    counted = anthropic_client.messages.count_tokens(
        model=MODEL,
        system="two words",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "three words here"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                    },
                ],
            }
        ],
    )
    assert counted.input_tokens == 2 + 3 + 85
