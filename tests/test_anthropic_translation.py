"""OpenAI-shaped requests reaching Claude: request, response and stream translation, no I/O."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from capstan.gateway.providers.anthropic_stream import AnthropicChunkTranslator
from capstan.gateway.providers.anthropic_translate import (
    DEFAULT_MAX_TOKENS,
    to_chat_completion,
    to_messages_body,
)
from capstan.gateway.providers.base import FailureKind, TranslationError, UpstreamError
from tests.anthropic_spec import validate_anthropic
from tests.openai_spec import validate_openai

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def body_for(**request: Any) -> dict[str, Any]:
    request.setdefault("model", "claude-test")
    request.setdefault("messages", [{"role": "user", "content": "hi"}])
    return to_messages_body(request)


# --- request --------------------------------------------------------------------------------


def test_system_and_developer_messages_become_system_blocks_in_order() -> None:
    body = body_for(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
            {"role": "user", "content": "hi"},
        ]
    )
    assert body["system"] == [
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": "Use French."},
    ]
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


def test_data_url_image_becomes_a_base64_source() -> None:
    part = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}}
    body = body_for(messages=[{"role": "user", "content": [part]}])
    assert body["messages"][0]["content"] == [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"},
        }
    ]


def test_https_image_becomes_a_url_source() -> None:
    part = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    body = body_for(messages=[{"role": "user", "content": [part]}])
    source = body["messages"][0]["content"][0]["source"]
    assert source == {"type": "url", "url": "https://example.com/cat.png"}


def test_image_that_is_not_a_url_is_refused() -> None:
    part = {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}
    with pytest.raises(TranslationError) as caught:
        body_for(messages=[{"role": "user", "content": [part]}])
    assert caught.value.param == "messages"


def test_inline_pdf_file_becomes_a_document_block() -> None:
    part = {
        "type": "file",
        "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"},
    }
    body = body_for(messages=[{"role": "user", "content": [part]}])
    assert body["messages"][0]["content"][0] == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
        "title": "a.pdf",
    }


def test_assistant_tool_calls_become_tool_use_blocks() -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
    }
    body = body_for(
        messages=[
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [call]},
        ]
    )
    assert body["messages"][1]["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Oslo"}},
    ]


def test_unparseable_tool_arguments_are_kept_raw() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
    body = body_for(messages=[{"role": "assistant", "content": None, "tool_calls": [call]}])
    assert body["messages"][0]["content"][0]["input"] == {"_raw_arguments": "{oops"}


def test_consecutive_tool_messages_become_one_user_turn_before_the_next_text() -> None:
    calls = [
        {"id": f"c{i}", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
        for i in (1, 2)
    ]
    body = body_for(
        messages=[
            {"role": "user", "content": "both cities"},
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "rain"}]},
            {"role": "user", "content": "and tomorrow?"},
        ]
    )
    assert [turn["role"] for turn in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "c1", "content": "sunny"},
        {"type": "tool_result", "tool_use_id": "c2", "content": [{"type": "text", "text": "rain"}]},
        {"type": "text", "text": "and tomorrow?"},
    ]


def test_cache_control_on_parts_and_tools_is_passed_on() -> None:
    marker = {"type": "ephemeral"}
    system = [{"type": "text", "text": "long rules", "cache_control": marker}]
    body = body_for(
        messages=[{"role": "system", "content": system}, {"role": "user", "content": "hi"}],
        tools=[{**WEATHER_TOOL, "cache_control": marker}],
    )
    assert body["system"][0]["cache_control"] == marker
    assert body["tools"][0]["cache_control"] == marker


def test_tools_carry_their_schema_as_input_schema() -> None:
    body = body_for(tools=[WEATHER_TOOL])
    assert body["tools"] == [
        {
            "name": "weather",
            "description": "Weather in a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        (
            {"type": "function", "function": {"name": "weather"}},
            {"type": "tool", "name": "weather"},
        ),
    ],
)
def test_tool_choice_maps_to_anthropic(choice: Any, expected: dict[str, Any]) -> None:
    assert body_for(tools=[WEATHER_TOOL], tool_choice=choice)["tool_choice"] == expected


def test_parallel_tool_calls_false_disables_parallel_tool_use() -> None:
    body = body_for(tools=[WEATHER_TOOL], parallel_tool_calls=False)
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_tool_choice_without_tools_is_dropped() -> None:
    assert "tool_choice" not in body_for(tool_choice="required")


def test_max_tokens_defaults_when_absent() -> None:
    assert body_for()["max_tokens"] == DEFAULT_MAX_TOKENS


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert body_for(max_tokens=50, max_completion_tokens=70)["max_tokens"] == 70


def test_stop_string_becomes_a_stop_sequence_list() -> None:
    assert body_for(stop="END")["stop_sequences"] == ["END"]


def test_temperature_is_clamped_to_anthropic_range() -> None:
    assert body_for(temperature=1.7, top_p=0.9)["temperature"] == 1.0


def test_user_becomes_metadata_user_id() -> None:
    assert body_for(user="u-42")["metadata"] == {"user_id": "u-42"}


def test_reasoning_effort_enables_thinking_with_its_budget() -> None:
    body = body_for(reasoning_effort="medium", max_tokens=8000, temperature=0.3)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert "temperature" not in body  # Anthropic refuses sampling parameters with thinking


def test_reasoning_budget_stays_below_max_tokens() -> None:
    assert body_for(reasoning_effort="high", max_tokens=3000)["thinking"]["budget_tokens"] == 2999


def test_reasoning_with_too_few_max_tokens_is_refused() -> None:
    with pytest.raises(TranslationError) as caught:
        body_for(reasoning_effort="low", max_tokens=500)
    assert caught.value.param == "reasoning_effort"


def test_thinking_blocks_sent_back_open_the_assistant_turn() -> None:
    thinking = {"type": "thinking", "thinking": "hmm", "signature": "sig"}
    message = {"role": "assistant", "content": "ok", "thinking_blocks": [thinking]}
    body = body_for(messages=[{"role": "user", "content": "q"}, message])
    assert body["messages"][1]["content"] == [thinking, {"type": "text", "text": "ok"}]


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format",
        ),
    ],
)
def test_features_anthropic_cannot_express_are_refused_by_name(
    params: dict[str, Any], name: str
) -> None:
    with pytest.raises(TranslationError) as caught:
        body_for(**params)
    assert caught.value.param == name


def test_translated_body_fits_the_anthropic_request_schema() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
    body = body_for(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
        tools=[WEATHER_TOOL],
        tool_choice="required",
        stop=["END"],
        temperature=0.2,
        user="u",
    )
    validate_anthropic("CreateMessageParams", body)


# --- response -------------------------------------------------------------------------------


def anthropic_message(content: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": content,
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }
    return {**message, **fields}


def test_text_blocks_are_joined_into_one_message() -> None:
    blocks = [{"type": "text", "text": "Hello "}, {"type": "text", "text": "world"}]
    completion = to_chat_completion(anthropic_message(blocks))
    validate_openai("CreateChatCompletionResponse", completion)
    ChatCompletion.model_validate(completion)
    assert completion["choices"][0]["message"]["content"] == "Hello world"


def test_tool_use_becomes_a_tool_call_with_json_arguments() -> None:
    block = {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}
    completion = to_chat_completion(anthropic_message([block], stop_reason="tool_use"))
    validate_openai("CreateChatCompletionResponse", completion)
    message = completion["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"][0]["function"] == {
        "name": "weather",
        "arguments": '{"city":"Oslo"}',
    }
    assert completion["choices"][0]["finish_reason"] == "tool_calls"


def test_thinking_becomes_reasoning_content_and_keeps_its_signature() -> None:
    thinking = {"type": "thinking", "thinking": "Let me see.", "signature": "sig"}
    completion = to_chat_completion(anthropic_message([thinking, {"type": "text", "text": "4"}]))
    validate_openai("CreateChatCompletionResponse", completion)
    message = completion["choices"][0]["message"]
    assert message["reasoning_content"] == "Let me see."
    assert message["thinking_blocks"] == [thinking]


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_stop_reason_maps_to_finish_reason(stop_reason: str, finish: str) -> None:
    message = anthropic_message([{"type": "text", "text": "x"}], stop_reason=stop_reason)
    assert to_chat_completion(message)["choices"][0]["finish_reason"] == finish


def test_usage_counts_cached_tokens_in_the_prompt() -> None:
    usage = {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 20,
    }
    completion = to_chat_completion(anthropic_message([], usage=usage))
    assert completion["usage"] == {
        "prompt_tokens": 130,
        "completion_tokens": 5,
        "total_tokens": 135,
        "prompt_tokens_details": {"cached_tokens": 100, "cache_creation_tokens": 20},
    }


def test_thinking_tokens_become_reasoning_tokens() -> None:
    usage = {
        "input_tokens": 1,
        "output_tokens": 50,
        "output_tokens_details": {"thinking_tokens": 40},
    }
    completion = to_chat_completion(anthropic_message([], usage=usage))
    assert completion["usage"]["completion_tokens_details"] == {"reasoning_tokens": 40}


# --- stream ---------------------------------------------------------------------------------


Event = tuple[str, dict[str, Any]]


def block_start(index: int, block: dict[str, Any]) -> Event:
    return (
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def block_delta(index: int, delta: dict[str, Any]) -> Event:
    return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def text_stream_events() -> list[Event]:
    start = anthropic_message([], stop_reason=None)
    start["usage"] = {"input_tokens": 7, "output_tokens": 1, "cache_read_input_tokens": 3}
    message_delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "max_tokens"},
        "usage": {"output_tokens": 2},
    }
    return [
        ("message_start", {"type": "message_start", "message": start}),
        block_start(0, {"type": "text", "text": ""}),
        ("ping", {"type": "ping"}),
        block_delta(0, {"type": "text_delta", "text": "Hel"}),
        block_delta(0, {"type": "text_delta", "text": "lo"}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", message_delta),
        ("message_stop", {"type": "message_stop"}),
    ]


def translate(events: list[Event]) -> list[dict[str, Any]]:
    translator = AnthropicChunkTranslator()
    return [chunk for event, data in events for chunk in translator.feed(event, data)]


def test_stream_opens_with_the_role_and_carries_text_deltas() -> None:
    chunks = translate(text_stream_events())
    for chunk in chunks:
        validate_openai("CreateChatCompletionStreamResponse", chunk)
        ChatCompletionChunk.model_validate(chunk)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello"


def test_stream_ends_with_finish_then_usage() -> None:
    chunks = translate(text_stream_events())
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 10
    assert chunks[-1]["usage"]["completion_tokens"] == 2
    assert chunks[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] == 3


def test_streamed_tool_use_becomes_indexed_tool_call_deltas() -> None:
    def tool(index: int, name: str, pieces: list[str]) -> list[Event]:
        block = {"type": "tool_use", "id": f"toolu_{index}", "name": name, "input": {}}
        json_deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
        return [block_start(index, block), *(block_delta(index, d) for d in json_deltas)]

    chunks = translate(tool(1, "a", ['{"x":', "1}"]) + tool(2, "b", ["{}"]))
    calls = [call for c in chunks for call in c["choices"][0]["delta"]["tool_calls"]]
    assert calls[0] == {
        "index": 0,
        "id": "toolu_1",
        "type": "function",
        "function": {"name": "a", "arguments": ""},
    }
    assert [c["function"]["arguments"] for c in calls if c["index"] == 0][1:] == ['{"x":', "1}"]
    assert (calls[-2]["id"], calls[-2]["index"]) == ("toolu_2", 1)


def test_thinking_deltas_become_reasoning_content_deltas() -> None:
    event = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "hmm"},
    }
    chunks = translate([("content_block_delta", event)])
    assert chunks[0]["choices"][0]["delta"] == {"reasoning_content": "hmm"}


def test_error_event_mid_stream_raises_overloaded() -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(UpstreamError) as caught:
        translate([("error", error)])
    assert caught.value.kind is FailureKind.OVERLOADED
    assert caught.value.message == "Overloaded"
