"""The upstream simulator speaks Anthropic's Messages API: the official SDK works against it,
whole and streamed, with tools, extended thinking, stop sequences, prompt caching and errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from functools import cache
from typing import Any

import anthropic
import httpx
import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from capstan.testing.simulator import build_simulator
from tests.openai_spec import spec_path
from tests.servers import RunningServer, start_asgi

MODEL = "claude-simulated"  # not a real model: the SDK warns about deprecated real ones
WEATHER: Any = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
    },
}
TIME: Any = {
    "name": "get_time",
    "input_schema": {
        "type": "object",
        "properties": {"zone": {"type": "string"}},
        "required": ["zone"],
    },
}
THINKING: Any = {"type": "enabled", "budget_tokens": 1024}
HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}


ANTHROPIC_SPEC = "anthropic-openapi-stainless-2024-11.json"


def _without_null_types(node: Any) -> Any:
    """The document writes `"type": null` where it means no constraint (the model name)."""
    if isinstance(node, list):
        return [_without_null_types(item) for item in node]
    if isinstance(node, dict):
        return {
            key: _without_null_types(value)
            for key, value in node.items()
            if not (key == "type" and value is None)
        }
    return node


@cache
def anthropic_validator(schema_name: str) -> jsonschema.Draft202012Validator:
    """A validator for a component of Anthropic's (stale, 2024-11) OpenAPI document: good for
    the required fields and enums of what existed then (text and tool_use, not thinking)."""
    raw = json.loads((spec_path().parent / ANTHROPIC_SPEC).read_text())
    document = _without_null_types(raw)
    resource: Resource[Any] = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:anthropic", resource)
    schema = {"$ref": f"urn:anthropic#/components/schemas/{schema_name}"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate_anthropic(schema_name: str, instance: Any) -> None:
    problems = [error.message for error in anthropic_validator(schema_name).iter_errors(instance)]
    assert not problems, f"not a valid {schema_name}: {problems}"


@pytest.fixture(scope="module")
def simulator() -> Iterator[RunningServer]:
    server = start_asgi(build_simulator())
    yield server
    server.stop()


@pytest.fixture
def client(simulator: RunningServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key="sk-ant-test", base_url=simulator.url, max_retries=0) as sdk:
        yield sdk


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def set_faults(simulator: RunningServer, model: str, **faults: Any) -> None:
    httpx.put(f"{simulator.url}/_sim/faults", json={"model": model, **faults}).raise_for_status()


def test_a_message_echoes_the_prompt(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model=MODEL, max_tokens=256, messages=user("hello claude"))
    assert message.id.startswith("msg_")
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == MODEL
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    block = message.content[0]
    assert block.type == "text"
    assert block.text.startswith("Echo: hello claude.")


def test_usage_counts_the_words_of_system_prompt_and_reply(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
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
        async with anthropic.AsyncAnthropic(
            api_key="sk-ant-test", base_url=simulator.url, max_retries=0
        ) as sdk:
            return await sdk.messages.create(
                model=MODEL, max_tokens=64, messages=user("async hello")
            )

    message = asyncio.run(ask())
    assert message.content[0].type == "text"
    assert message.content[0].text.startswith("Echo: async hello.")


def test_the_stream_helper_accumulates_the_final_message(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model=MODEL, max_tokens=256, messages=user("stream it")) as stream:
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
            anthropic.AsyncAnthropic(
                api_key="sk-ant-test", base_url=simulator.url, max_retries=0
            ) as sdk,
            sdk.messages.stream(
                model=MODEL, max_tokens=64, messages=user("async stream")
            ) as stream,
        ):
            return "".join([piece async for piece in stream.text_stream])

    assert asyncio.run(collect()).startswith("Echo: async stream.")


def test_raw_stream_events_come_in_anthropic_order(client: anthropic.Anthropic) -> None:
    events = list(
        client.messages.create(model=MODEL, max_tokens=64, messages=user("order"), stream=True)
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


def test_every_streamed_event_has_an_event_line(simulator: RunningServer) -> None:
    body = {"model": MODEL, "max_tokens": 32, "stream": True, "messages": user("lines")}
    response = httpx.post(f"{simulator.url}/v1/messages", headers=HEADERS, json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = [frame for frame in response.text.split("\n\n") if frame]
    assert all(frame.startswith("event: ") and "\ndata: " in frame for frame in frames)
    assert "event: ping" in response.text


def test_auto_tool_choice_says_so_then_calls_the_first_two_tools(
    client: anthropic.Anthropic,
) -> None:
    message = client.messages.create(
        model=MODEL, max_tokens=256, tools=[WEATHER, TIME], messages=user("weather and time")
    )
    assert message.stop_reason == "tool_use"
    assert [block.type for block in message.content] == ["text", "tool_use", "tool_use"]
    calls = [block for block in message.content if block.type == "tool_use"]
    assert [call.name for call in calls] == ["get_weather", "get_time"]
    assert all(call.id.startswith("toolu_") for call in calls)
    jsonschema.validate(calls[0].input, WEATHER["input_schema"])


def test_disabling_parallel_tool_use_calls_one_tool(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model=MODEL,
        max_tokens=256,
        tools=[WEATHER, TIME],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        messages=user("weather and time"),
    )
    assert [block.type for block in message.content] == ["tool_use"]


def test_a_named_tool_choice_calls_only_that_tool(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model=MODEL,
        max_tokens=256,
        tools=[WEATHER, TIME],
        tool_choice={"type": "tool", "name": "get_time"},
        messages=user("time please"),
    )
    assert [(b.type, getattr(b, "name", None)) for b in message.content] == [
        ("tool_use", "get_time")
    ]


def test_tool_choice_none_answers_in_text(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model=MODEL,
        max_tokens=256,
        tools=[WEATHER],
        tool_choice={"type": "none"},
        messages=user("just talk"),
    )
    assert message.stop_reason == "end_turn"
    assert [block.type for block in message.content] == ["text"]


def test_a_tool_result_gets_a_text_answer_echoing_it(client: anthropic.Anthropic) -> None:
    first = client.messages.create(
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
    second = client.messages.create(model=MODEL, max_tokens=256, tools=[WEATHER], messages=messages)
    assert second.stop_reason == "end_turn"
    assert second.content[0].type == "text"
    assert second.content[0].text.startswith("Echo: hot and sunny.")


def test_an_unanswered_tool_use_is_a_bad_request(client: anthropic.Anthropic) -> None:
    messages: Any = [
        *user("weather"),
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}],
        },
        *user("well?"),
    ]
    with pytest.raises(anthropic.BadRequestError, match="toolu_1"):
        client.messages.create(model=MODEL, max_tokens=64, messages=messages)


def test_streamed_tool_input_accumulates_into_the_final_message(
    client: anthropic.Anthropic,
) -> None:
    with client.messages.stream(
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


def test_thinking_comes_first_with_a_signature(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model=MODEL, max_tokens=2048, thinking=THINKING, messages=user("think about it")
    )
    thinking, answer = message.content
    assert thinking.type == "thinking"
    assert thinking.thinking.startswith("Considering: think about it")
    assert thinking.signature
    assert answer.type == "text"
    assert message.usage.output_tokens == len(thinking.thinking.split()) + len(answer.text.split())


def test_thinking_streams_thinking_and_signature_deltas(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
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
    client: anthropic.Anthropic,
) -> None:
    with pytest.raises(anthropic.BadRequestError, match="budget_tokens"):
        client.messages.create(model=MODEL, max_tokens=1024, thinking=THINKING, messages=user("hi"))


def test_a_stop_sequence_truncates_with_its_stop_reason(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model=MODEL,
        max_tokens=256,
        stop_sequences=["gamma"],
        messages=user("alpha beta gamma delta"),
    )
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "gamma"
    assert message.content[0].type == "text"
    assert message.content[0].text == "Echo: alpha beta"


def test_max_tokens_truncates_with_its_stop_reason(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model=MODEL, max_tokens=3, messages=user("long story"))
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 3


def test_a_cached_prefix_is_written_once_then_read(client: anthropic.Anthropic) -> None:
    system: Any = [
        {
            "type": "text",
            "text": "a long and stable system prompt for caching",
            "cache_control": {"type": "ephemeral"},
        }
    ]

    def usage(question: str) -> anthropic.types.Usage:
        message = client.messages.create(
            model="claude-cache-test", max_tokens=64, system=system, messages=user(question)
        )
        return message.usage

    first = usage("first question")
    assert (first.cache_creation_input_tokens, first.cache_read_input_tokens) == (8, 0)
    assert first.input_tokens == 2
    second = usage("another question here")
    assert (second.cache_creation_input_tokens, second.cache_read_input_tokens) == (0, 8)
    assert second.input_tokens == 3


def test_count_tokens_counts_the_whole_prompt(client: anthropic.Anthropic) -> None:
    counted = client.messages.count_tokens(
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


def test_a_bad_key_raises_authentication_error(simulator: RunningServer) -> None:
    sdk = anthropic.Anthropic(api_key="bad-key", base_url=simulator.url, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as raised:
        sdk.messages.create(model=MODEL, max_tokens=16, messages=user("hi"))
    body: Any = raised.value.body
    assert body["error"]["type"] == "authentication_error"
    assert raised.value.response.headers["request-id"].startswith("req_")


def test_an_unknown_model_raises_not_found(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="unknown-claude", max_tokens=16, messages=user("hi"))


def test_an_unknown_role_raises_bad_request(client: anthropic.Anthropic) -> None:
    wizard: Any = [{"role": "wizard", "content": "hi"}]
    with pytest.raises(anthropic.BadRequestError, match="role"):
        client.messages.create(model=MODEL, max_tokens=16, messages=wizard)


def test_empty_messages_raise_bad_request(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="at least one message"):
        client.messages.create(model=MODEL, max_tokens=16, messages=[])


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
    simulator: RunningServer, client: anthropic.Anthropic
) -> None:
    set_faults(simulator, "claude-limited", burst_429=1, retry_after_s=3)
    with pytest.raises(anthropic.RateLimitError) as raised:
        client.messages.create(model="claude-limited", max_tokens=16, messages=user("hi"))
    headers = raised.value.response.headers
    assert headers["retry-after"] == "3"
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    body: Any = raised.value.body
    assert body["error"]["type"] == "rate_limit_error"


def test_a_server_error_fault_raises_internal_server_error(
    simulator: RunningServer, client: anthropic.Anthropic
) -> None:
    set_faults(simulator, "claude-broken", error_rate=1.0, error_status=500)
    with pytest.raises(anthropic.InternalServerError) as raised:
        client.messages.create(model="claude-broken", max_tokens=16, messages=user("hi"))
    body: Any = raised.value.body
    assert body["error"]["type"] == "api_error"


def test_an_overloaded_fault_is_an_overloaded_error(
    simulator: RunningServer, client: anthropic.Anthropic
) -> None:
    set_faults(simulator, "claude-busy", error_rate=1.0, error_status=529)
    with pytest.raises(anthropic.APIStatusError) as raised:
        client.messages.create(model="claude-busy", max_tokens=16, messages=user("hi"))
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
