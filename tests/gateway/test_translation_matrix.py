"""The translation matrix: {OpenAI SDK, Anthropic SDK} x {every upstream wire format} x
{plain, streaming, tool call}, plus async streamed tool calls. Content, tool arguments, stop
reason and usage must survive the round trip; every OpenAI-dialect response and chunk must match
OpenAI's published schema."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anthropic
import openai
import pytest

from tests.gateway.setup import DEPLOYMENTS, GatewayUnderTest
from tests.openai_spec import WireRecorder, validate_openai_exchange

KINDS = list(DEPLOYMENTS)
PROMPT = "what is the weather like in Lisbon today"
ECHO = "Echo: what is the weather like in Lisbon today."
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ANTHROPIC_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
}
COMPLETION = "CreateChatCompletionResponse"
CHUNK = "CreateChatCompletionStreamResponse"


def user(text: str = PROMPT) -> list[Any]:
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize("kind", KINDS)
def test_openai_request_plain(
    kind: str, openai_client: openai.OpenAI, recorder: WireRecorder
) -> None:
    completion = openai_client.chat.completions.create(model=DEPLOYMENTS[kind], messages=user())
    validate_openai_exchange(recorder.last, COMPLETION)
    choice = completion.choices[0]
    assert choice.message.content is not None
    assert choice.message.content.startswith(ECHO)
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens >= len(PROMPT.split())
    assert completion.usage.completion_tokens == len(choice.message.content.split())


@pytest.mark.parametrize("kind", KINDS)
def test_openai_request_streaming(
    kind: str, openai_client: openai.OpenAI, recorder: WireRecorder
) -> None:
    whole = openai_client.chat.completions.create(model=DEPLOYMENTS[kind], messages=user())
    stream = openai_client.chat.completions.create(
        model=DEPLOYMENTS[kind],
        messages=user(),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    validate_openai_exchange(recorder.last, CHUNK)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(text.split())
    assert whole.usage is not None
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


@pytest.mark.parametrize("kind", KINDS)
def test_openai_request_tool_call(
    kind: str, openai_client: openai.OpenAI, recorder: WireRecorder
) -> None:
    completion = openai_client.chat.completions.create(
        model=DEPLOYMENTS[kind],
        messages=user(),
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="required",
    )
    validate_openai_exchange(recorder.last, COMPLETION)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert calls
    call = calls[0]
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0


@pytest.mark.parametrize("kind", KINDS)
def test_anthropic_request_plain(kind: str, anthropic_client: anthropic.Anthropic) -> None:
    message = anthropic_client.messages.create(
        model=DEPLOYMENTS[kind], max_tokens=200, messages=user()
    )
    texts = [block.text for block in message.content if block.type == "text"]
    assert texts
    assert texts[0].startswith(ECHO)
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0) >= len(
        PROMPT.split()
    )
    assert message.usage.output_tokens == len(texts[0].split())


@pytest.mark.parametrize("kind", KINDS)
def test_anthropic_request_streaming(kind: str, anthropic_client: anthropic.Anthropic) -> None:
    whole = anthropic_client.messages.create(
        model=DEPLOYMENTS[kind], max_tokens=200, messages=user()
    )
    with anthropic_client.messages.stream(
        model=DEPLOYMENTS[kind], max_tokens=200, messages=user()
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "".join(b.text for b in whole.content if b.type == "text")
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == whole.usage.output_tokens


@pytest.mark.parametrize("kind", KINDS)
def test_anthropic_request_tool_call(kind: str, anthropic_client: anthropic.Anthropic) -> None:
    message = anthropic_client.messages.create(
        model=DEPLOYMENTS[kind],
        max_tokens=200,
        messages=user(),
        tools=[ANTHROPIC_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "any"},
    )
    assert message.stop_reason == "tool_use"
    uses = [block for block in message.content if block.type == "tool_use"]
    assert uses
    assert uses[0].name == "get_weather"
    assert isinstance(uses[0].input, dict)
    assert isinstance(uses[0].input["city"], str)
    assert message.usage.output_tokens > 0


@pytest.mark.parametrize("kind", KINDS)
def test_the_async_openai_client_streams_a_tool_call_from_every_upstream(
    kind: str, gateway: GatewayUnderTest
) -> None:
    async def call() -> tuple[str, str, str | None]:
        async with openai.AsyncOpenAI(
            base_url=gateway.url + "/v1", api_key=gateway.key, max_retries=0
        ) as client:
            stream = await client.chat.completions.create(
                model=DEPLOYMENTS[kind],
                messages=user(),
                tools=[WEATHER_TOOL],  # type: ignore[list-item]
                tool_choice="required",
                stream=True,
            )
            name, arguments, finish = "", "", None
            async for chunk in stream:
                for choice in chunk.choices:
                    for call in choice.delta.tool_calls or []:
                        if call.index == 0 and call.function is not None:
                            name += call.function.name or ""
                            arguments += call.function.arguments or ""
                    finish = choice.finish_reason or finish
            return name, arguments, finish

    name, arguments, finish = asyncio.run(call())
    assert name == "get_weather"
    assert isinstance(json.loads(arguments)["city"], str)
    assert finish == "tool_calls"


@pytest.mark.parametrize("kind", KINDS)
def test_the_async_anthropic_client_streams_a_tool_use_from_every_upstream(
    kind: str, gateway: GatewayUnderTest
) -> None:
    async def call() -> anthropic.types.Message:
        async with (
            anthropic.AsyncAnthropic(
                base_url=gateway.url, api_key=gateway.key, max_retries=0
            ) as client,
            client.messages.stream(
                model=DEPLOYMENTS[kind],
                max_tokens=200,
                messages=user(),
                tools=[ANTHROPIC_TOOL],  # type: ignore[list-item]
                tool_choice={"type": "any"},
            ) as stream,
        ):
            return await stream.get_final_message()

    message = asyncio.run(call())
    assert message.stop_reason == "tool_use"
    uses = [block for block in message.content if block.type == "tool_use"]
    assert uses
    assert uses[0].name == "get_weather"
    assert isinstance(uses[0].input, dict)
    assert isinstance(uses[0].input["city"], str)
