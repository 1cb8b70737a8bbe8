"""The Cohere adapter's translation functions as plain functions on plain data, no server."""

from __future__ import annotations

from typing import Any

import pytest

from capstan.gateway.providers.base import FailureKind, TranslationError, UpstreamError
from capstan.gateway.providers.cohere_request import chat_body
from capstan.gateway.providers.cohere_response import (
    StreamTranslator,
    completion_from_cohere,
    usage_from_cohere,
)

TOOL: dict[str, Any] = {"type": "function", "function": {"name": "lookup"}}


def body(**extra: Any) -> dict[str, Any]:
    request = {"messages": [{"role": "user", "content": "hi"}], **extra}
    return chat_body("command-a", request)


def test_top_p_of_one_is_clamped_into_cohere_range() -> None:
    assert body(top_p=1.0)["p"] == 0.99


def test_a_single_stop_string_becomes_a_list() -> None:
    assert body(stop="END")["stop_sequences"] == ["END"]


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert body(max_tokens=50, max_completion_tokens=7)["max_tokens"] == 7


def test_a_json_schema_response_format_becomes_json_object_with_schema() -> None:
    schema = {"type": "object", "properties": {}}
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}

    assert body(response_format=response_format)["response_format"] == {
        "type": "json_object",
        "json_schema": schema,
    }


def test_a_developer_message_becomes_a_system_message() -> None:
    translated = chat_body("m", {"messages": [{"role": "developer", "content": "rules"}]})

    assert translated["messages"] == [{"role": "system", "content": "rules"}]


def test_image_parts_become_cohere_image_url_blocks() -> None:
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA", "detail": "low"}},
    ]

    translated = chat_body("m", {"messages": [{"role": "user", "content": content}]})

    assert translated["messages"][0]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA", "detail": "low"}},
    ]


def test_an_audio_part_is_refused_naming_where_it_is() -> None:
    content = [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]

    with pytest.raises(TranslationError) as caught:
        chat_body("m", {"messages": [{"role": "user", "content": content}]})
    assert caught.value.param == "messages[0].content[0]"


def test_tools_get_empty_parameters_when_they_declare_none() -> None:
    (tool,) = body(tools=[TOOL])["tools"]

    assert tool == {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
    }


@pytest.mark.parametrize(("choice", "expected"), [("required", "REQUIRED"), ("none", "NONE")])
def test_tool_choice_words_map_to_cohere_words(choice: str, expected: str) -> None:
    assert body(tools=[TOOL], tool_choice=choice)["tool_choice"] == expected


def test_auto_tool_choice_is_left_to_cohere_default() -> None:
    assert "tool_choice" not in body(tools=[TOOL], tool_choice="auto")


def test_a_named_tool_choice_is_required_when_it_is_the_only_tool() -> None:
    choice = {"type": "function", "function": {"name": "lookup"}}

    assert body(tools=[TOOL], tool_choice=choice)["tool_choice"] == "REQUIRED"


def test_a_named_tool_choice_among_several_tools_is_refused() -> None:
    other = {"type": "function", "function": {"name": "other"}}
    choice = {"type": "function", "function": {"name": "lookup"}}

    with pytest.raises(TranslationError) as caught:
        body(tools=[TOOL, other], tool_choice=choice)
    assert caught.value.param == "tool_choice"


def test_assistant_content_beside_tool_calls_becomes_the_tool_plan() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    message = {"role": "assistant", "content": "Let me check.", "tool_calls": [call]}

    translated = chat_body("m", {"messages": [message]})

    assert translated["messages"][0] == {
        "role": "assistant",
        "tool_calls": [call],
        "tool_plan": "Let me check.",
    }


def test_usage_falls_back_to_billed_units() -> None:
    usage = usage_from_cohere({"billed_units": {"input_tokens": 4.0, "output_tokens": 2.0}})

    assert usage == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}


def test_the_tool_plan_is_the_content_of_a_tool_call_answer() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    answer = {
        "id": "r1",
        "finish_reason": "TOOL_CALL",
        "message": {"role": "assistant", "tool_plan": "Calling f.", "tool_calls": [call]},
    }

    message = completion_from_cohere(answer, "m")["choices"][0]["message"]

    assert message["content"] == "Calling f."
    assert message["tool_calls"] == [call]


def test_an_answer_without_a_message_is_malformed() -> None:
    with pytest.raises(UpstreamError) as caught:
        completion_from_cohere({"id": "x"}, "m")
    assert caught.value.kind is FailureKind.MALFORMED


def test_a_stream_ending_in_error_raises_the_vendor_message() -> None:
    translator = StreamTranslator("m")
    end = {"type": "message-end", "delta": {"finish_reason": "ERROR", "error": "model crashed"}}

    with pytest.raises(UpstreamError) as caught:
        translator.feed(end)
    assert caught.value.kind is FailureKind.SERVER
    assert caught.value.message == "model crashed"
    assert not translator.finished


def test_a_second_streamed_tool_call_gets_the_next_index() -> None:
    translator = StreamTranslator("m")
    for index in (0, 1):
        head = {"id": f"c{index}", "type": "function", "function": {"name": "f", "arguments": ""}}
        translator.feed(
            {"type": "tool-call-start", "index": index, "delta": {"message": {"tool_calls": head}}}
        )

    piece = {"tool_calls": {"function": {"arguments": "{}"}}}
    (chunk,) = translator.feed({"type": "tool-call-delta", "index": 1, "delta": {"message": piece}})

    assert chunk["choices"][0]["delta"]["tool_calls"] == [
        {"index": 1, "function": {"arguments": "{}"}}
    ]
