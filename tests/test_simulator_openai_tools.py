"""The simulator's OpenAI tool calling: which tools it calls, the arguments it makes up from their
schemas, streamed calls, and the 400s OpenAI gives for tool turns that do not pair up."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest

from tests.openai_spec import CHUNK, COMPLETION, WireRecorder, validate_openai_exchange
from tests.simulator_fixtures import TIME_PARAMETERS, WEATHER_PARAMETERS, user

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": WEATHER_PARAMETERS,
    },
}
TIME: Any = {"type": "function", "function": {"name": "get_time", "parameters": TIME_PARAMETERS}}
ASKED_FOR_WEATHER: Any = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    ],
}


def test_named_tool_choice_calls_that_function_with_schema_arguments(
    openai_client: openai.OpenAI, recorder: WireRecorder
) -> None:
    completion = openai_client.chat.completions.create(
        model="gpt-4o",
        messages=user("what time is it"),
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    validate_openai_exchange(recorder.last, COMPLETION)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert len(calls) == 1
    call = calls[0]
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, WEATHER["function"]["parameters"])


def test_parallel_tool_calls_call_the_first_two_tools(openai_client: openai.OpenAI) -> None:
    completion = openai_client.chat.completions.create(
        model="gpt-4o",
        messages=user("weather and time"),
        tools=[WEATHER, TIME],
    )
    calls = completion.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls if c.type == "function"] == ["get_weather", "get_time"]


def test_parallel_tool_calls_false_calls_one_tool(openai_client: openai.OpenAI) -> None:
    completion = openai_client.chat.completions.create(
        model="gpt-4o",
        messages=user("weather and time"),
        tools=[WEATHER, TIME],
        tool_choice="required",
        parallel_tool_calls=False,
    )
    assert len(completion.choices[0].message.tool_calls or []) == 1


def test_tool_choice_none_answers_in_text(openai_client: openai.OpenAI) -> None:
    completion = openai_client.chat.completions.create(
        model="gpt-4o",
        messages=user("no tools please"),
        tools=[WEATHER],
        tool_choice="none",
    )
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.tool_calls is None


def test_a_tool_result_gets_a_text_answer_echoing_it(openai_client: openai.OpenAI) -> None:
    first = openai_client.chat.completions.create(
        model="gpt-4o",
        messages=user("weather in paris"),
        tools=[WEATHER],
    )
    call = (first.choices[0].message.tool_calls or [])[0]
    messages: list[Any] = [
        *user("weather in paris"),
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny and mild"},
    ]
    second = openai_client.chat.completions.create(
        model="gpt-4o",
        messages=messages,
        tools=[WEATHER],
    )
    assert second.choices[0].finish_reason == "stop"
    assert (second.choices[0].message.content or "").startswith("Echo: sunny and mild.")


def test_an_unanswered_tool_call_is_a_bad_request(openai_client: openai.OpenAI) -> None:
    messages: list[Any] = [
        *user("weather"),
        ASKED_FOR_WEATHER,
        *user("well?"),
    ]
    with pytest.raises(openai.BadRequestError, match="call_1"):
        openai_client.chat.completions.create(model="gpt-4o", messages=messages)


def test_a_tool_result_for_an_unknown_call_is_a_bad_request(openai_client: openai.OpenAI) -> None:
    messages: list[Any] = [
        *user("weather"),
        ASKED_FOR_WEATHER,
        {"role": "tool", "tool_call_id": "call_2", "content": "sunny"},
    ]
    with pytest.raises(openai.BadRequestError, match="call_2"):
        openai_client.chat.completions.create(model="gpt-4o", messages=messages)


def test_streamed_tool_calls_arrive_in_pieces_and_accumulate(
    openai_client: openai.OpenAI, recorder: WireRecorder
) -> None:
    chunks = list(
        openai_client.chat.completions.create(
            model="gpt-4o",
            messages=user("weather and time"),
            tools=[WEATHER, TIME],
            stream=True,
        )
    )
    validate_openai_exchange(recorder.last, CHUNK)
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in chunk.choices[0].delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            call["name"] += (delta.function.name if delta.function else None) or ""
            call["arguments"] += (delta.function.arguments if delta.function else None) or ""
    assert [calls[i]["name"] for i in sorted(calls)] == ["get_weather", "get_time"]
    assert all(call["id"].startswith("call_") for call in calls.values())
    assert json.loads(calls[1]["arguments"]).keys() == {"zone"}
    argument_chunks = [
        c
        for c in chunks
        if c.choices[0].delta.tool_calls and not c.choices[0].delta.tool_calls[0].id
    ]
    assert len(argument_chunks) > 2
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
