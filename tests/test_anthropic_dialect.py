"""The Anthropic dialect at the gateway's edge: Messages bodies in, Messages and events out, no I/O.
Ends with the round-trip property between the two directions."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from anthropic.types import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from capstan.gateway.dialects.anthropic import (
    AnthropicStreamTranslator,
    anthropic_error,
    error_type,
    sse_bytes,
    to_anthropic_message,
    to_openai_request,
)
from capstan.gateway.providers.anthropic_translate import to_messages_body
from capstan.gateway.providers.base import TranslationError
from tests.anthropic_spec import validate_anthropic
from tests.openai_spec import validate_openai

WEATHER = {
    "name": "weather",
    "description": "Weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def request_for(**body: Any) -> dict[str, Any]:
    body.setdefault("model", "gpt-test")
    body.setdefault("max_tokens", 100)
    body.setdefault("messages", [{"role": "user", "content": "hi"}])
    return to_openai_request(body)


# --- request --------------------------------------------------------------------------------


def test_system_blocks_become_one_system_message_first() -> None:
    system = [
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Use French."},
    ]
    request = request_for(system=system)
    validate_openai("CreateChatCompletionRequest", request)
    assert request["messages"][0] == {"role": "system", "content": "Be brief.\n\nUse French."}


def test_base64_image_becomes_a_data_url() -> None:
    source = {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}
    content = [{"type": "image", "source": source}, {"type": "text", "text": "what is it?"}]
    request = request_for(messages=[{"role": "user", "content": content}])
    assert request["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
        {"type": "text", "text": "what is it?"},
    ]


def test_url_image_keeps_its_url() -> None:
    block = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    request = request_for(messages=[{"role": "user", "content": [block]}])
    assert request["messages"][0]["content"][0]["image_url"] == {"url": "https://example.com/a.png"}


def test_tool_use_becomes_an_assistant_tool_call() -> None:
    blocks = [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}},
    ]
    request = request_for(messages=[{"role": "assistant", "content": blocks}])
    assert request["messages"][0] == {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {
                "id": "toolu_1",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
            }
        ],
    }


def test_tool_results_become_tool_messages_before_the_user_text() -> None:
    content = [
        {"type": "tool_result", "tool_use_id": "t1", "content": "sunny"},
        {"type": "text", "text": "and tomorrow?"},
        {"type": "tool_result", "tool_use_id": "t2", "content": [{"type": "text", "text": "rain"}]},
    ]
    request = request_for(messages=[{"role": "user", "content": content}])
    validate_openai("CreateChatCompletionRequest", request)
    assert request["messages"] == [
        {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "t2", "content": "rain"},
        {"role": "user", "content": "and tomorrow?"},
    ]


def test_tool_error_result_is_marked_in_its_text() -> None:
    content = [{"type": "tool_result", "tool_use_id": "t1", "content": "boom", "is_error": True}]
    request = request_for(messages=[{"role": "user", "content": content}])
    assert request["messages"][0]["content"] == "Error: boom"


def test_thinking_in_the_history_is_dropped() -> None:
    blocks = [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "text", "text": "4"},
    ]
    request = request_for(messages=[{"role": "assistant", "content": blocks}])
    assert request["messages"] == [{"role": "assistant", "content": "4"}]


def test_text_document_becomes_text() -> None:
    document = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "doc"},
    }
    request = request_for(messages=[{"role": "user", "content": [document]}])
    assert request["messages"][0]["content"] == "doc"


def test_pdf_document_is_refused() -> None:
    source = {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}
    with pytest.raises(TranslationError) as caught:
        request_for(
            messages=[{"role": "user", "content": [{"type": "document", "source": source}]}]
        )
    assert caught.value.param == "messages"


def test_tools_carry_input_schema_as_parameters() -> None:
    tool = {**WEATHER, "cache_control": {"type": "ephemeral"}}
    assert request_for(tools=[tool])["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "parameters": WEATHER["input_schema"],
                "description": "Weather in a city",
            },
        }
    ]


def test_server_tools_are_refused() -> None:
    with pytest.raises(TranslationError) as caught:
        request_for(tools=[{"type": "web_search_20250305", "name": "web_search"}])
    assert caught.value.param == "tools"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        (
            {"type": "tool", "name": "weather"},
            {"type": "function", "function": {"name": "weather"}},
        ),
    ],
)
def test_tool_choice_maps_to_openai(choice: dict[str, Any], expected: Any) -> None:
    assert request_for(tools=[WEATHER], tool_choice=choice)["tool_choice"] == expected


def test_disable_parallel_tool_use_turns_parallel_calls_off() -> None:
    choice = {"type": "auto", "disable_parallel_tool_use": True}
    assert request_for(tools=[WEATHER], tool_choice=choice)["parallel_tool_calls"] is False


def test_sampling_parameters_carry_over_and_top_k_is_dropped() -> None:
    request = request_for(stop_sequences=["END"], temperature=0.5, top_p=0.9, top_k=40)
    assert (request["stop"], request["temperature"], request["top_p"]) == (["END"], 0.5, 0.9)
    assert "top_k" not in request


def test_metadata_user_id_becomes_user() -> None:
    assert request_for(metadata={"user_id": "u-42"})["user"] == "u-42"


def test_stream_asks_the_upstream_for_usage() -> None:
    request = request_for(stream=True)
    assert request["stream_options"] == {"include_usage": True}


def test_cache_control_markers_are_stripped() -> None:
    block = {"type": "text", "text": "long context", "cache_control": {"type": "ephemeral"}}
    text_part = {"type": "text", "text": "q"}
    request = request_for(messages=[{"role": "user", "content": [block, text_part]}])
    assert b"cache_control" not in orjson.dumps(request)


def test_thinking_budget_becomes_reasoning_effort() -> None:
    request = request_for(max_tokens=8000, thinking={"type": "enabled", "budget_tokens": 2048})
    assert request["reasoning_effort"] == "medium"


def test_mcp_servers_are_refused() -> None:
    with pytest.raises(TranslationError) as caught:
        request_for(mcp_servers=[{"type": "url", "url": "https://mcp.example", "name": "x"}])
    assert caught.value.param == "mcp_servers"


# --- reply ----------------------------------------------------------------------------------


def completion(message: dict[str, Any], finish: str = "stop", **choice: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-test",
        "choices": [
            {"index": 0, "message": message, "finish_reason": finish, "logprobs": None, **choice}
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14},
    }


def test_reply_fits_the_anthropic_message_schema() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": '{"a":1}'}}
    reply = {"role": "assistant", "content": "Checking.", "tool_calls": [call]}
    message = to_anthropic_message(completion(reply, "tool_calls"), "claude-alias")
    validate_anthropic("Message", message)
    Message.model_validate(message)
    assert message["id"] == "msg_abc"
    assert message["content"][1] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "w",
        "input": {"a": 1},
    }


def test_reasoning_content_becomes_a_leading_thinking_block() -> None:
    reply = {"role": "assistant", "content": "4", "reasoning_content": "2+2"}
    message = to_anthropic_message(completion(reply), "m")
    Message.model_validate(message)
    assert message["content"][0] == {"type": "thinking", "thinking": "2+2", "signature": ""}


def test_unparseable_arguments_are_kept_raw() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "w", "arguments": "{oops"}}
    message = to_anthropic_message(completion({"role": "assistant", "tool_calls": [call]}), "m")
    assert message["content"][0]["input"] == {"_raw_arguments": "{oops"}


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
    ],
)
def test_finish_reason_maps_to_stop_reason(finish: str, stop_reason: str) -> None:
    message = to_anthropic_message(completion({"content": "x"}, finish), "m")
    assert message["stop_reason"] == stop_reason


def test_matched_stop_sequence_is_reported_when_the_upstream_names_it() -> None:
    reply = completion({"content": "x"}, "stop", stop_reason="END")
    message = to_anthropic_message(reply, "m", stop=["END"])
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "END")


def test_usage_input_tokens_exclude_cache_reads_and_writes() -> None:
    reply = completion({"content": "x"})
    reply["usage"]["prompt_tokens_details"] = {"cached_tokens": 6, "cache_creation_tokens": 3}
    assert to_anthropic_message(reply, "m")["usage"] == {
        "input_tokens": 1,
        "output_tokens": 4,
        "cache_read_input_tokens": 6,
        "cache_creation_input_tokens": 3,
    }


def test_refusal_becomes_text_with_the_refusal_stop_reason() -> None:
    message = to_anthropic_message(completion({"content": None, "refusal": "No."}), "m")
    assert message["content"] == [{"type": "text", "text": "No."}]
    assert message["stop_reason"] == "refusal"


# --- stream ---------------------------------------------------------------------------------


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {"id": "chatcmpl-abc", "object": "chat.completion.chunk", "choices": [choice]}


def usage_chunk() -> dict[str, Any]:
    usage = {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}
    return {"id": "chatcmpl-abc", "choices": [], "usage": usage}


def events_for(chunks: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    translator = AnthropicStreamTranslator("claude-alias")
    events = [event for c in chunks for event in translator.feed(c)]
    return events + translator.finish()


def test_text_stream_event_order() -> None:
    events = events_for(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk({}, "stop"),
            usage_chunk(),
        ]
    )
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    for name, data in events:
        assert data["type"] == name
        schema = "".join(word.capitalize() for word in name.split("_")) + "Event"
        validate_anthropic(schema, data)


def test_thinking_text_and_tools_get_consecutive_block_indexes() -> None:
    def call(index: int, **fields: Any) -> dict[str, Any]:
        return chunk({"tool_calls": [{"index": index, **fields}]})

    events = events_for(
        [
            chunk({"reasoning_content": "hmm"}),
            chunk({"content": "Let me check."}),
            call(0, id="c1", type="function", function={"name": "a", "arguments": '{"x"'}),
            call(0, function={"arguments": ":1}"}),
            call(1, id="c2", type="function", function={"name": "b", "arguments": "{}"}),
            chunk({}, "tool_calls"),
        ]
    )
    starts = [
        (d["index"], d["content_block"]["type"]) for n, d in events if n == "content_block_start"
    ]
    stops = [d["index"] for n, d in events if n == "content_block_stop"]
    assert starts == [(0, "thinking"), (1, "text"), (2, "tool_use"), (3, "tool_use")]
    assert stops == [0, 1, 2, 3]
    pieces = [
        d["delta"]["partial_json"]
        for n, d in events
        if n == "content_block_delta" and d["index"] == 2
    ]
    assert "".join(pieces) == '{"x":1}'


def test_message_delta_carries_stop_reason_and_usage() -> None:
    events = events_for([chunk({"content": "x"}), chunk({}, "length"), usage_chunk()])
    name, data = events[-2]
    assert name == "message_delta"
    assert data["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert data["usage"] == {
        "output_tokens": 5,
        "input_tokens": 9,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    }


def test_empty_stream_still_frames_a_message() -> None:
    names = [name for name, _ in events_for([])]
    assert names == ["message_start", "message_delta", "message_stop"]


def test_sse_bytes_writes_the_event_line_and_the_data_line() -> None:
    assert sse_bytes("ping", {"type": "ping"}) == b'event: ping\ndata: {"type":"ping"}\n\n'


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (529, "overloaded_error"),
        (418, "invalid_request_error"),
        (502, "api_error"),
    ],
)
def test_error_type_by_status(status: int, kind: str) -> None:
    assert error_type(status) == kind


def test_anthropic_error_body_fits_the_schema() -> None:
    body = anthropic_error(429, None, "slow down")
    validate_anthropic("ErrorResponse", body)
    assert body["error"] == {"type": "rate_limit_error", "message": "slow down"}


# --- round trip -----------------------------------------------------------------------------

texts = st.text(min_size=1, max_size=20)
names = st.from_regex(r"[a-z_]{1,10}", fullmatch=True)
arguments = st.dictionaries(names, st.integers(-(2**53), 2**53) | texts, max_size=3).map(
    lambda d: orjson.dumps(d).decode()
)


@st.composite
def exchanges(draw: st.DrawFn) -> list[dict[str, Any]]:
    """One user turn, then an assistant reply: text, or tool calls followed by their results."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": draw(texts)}]
    if draw(st.booleans()):
        messages.append({"role": "assistant", "content": draw(texts)})
        return messages
    ids = draw(
        st.lists(
            st.from_regex(r"call_[a-z0-9]{4}", fullmatch=True), min_size=1, max_size=3, unique=True
        )
    )
    calls = [
        {
            "id": i,
            "type": "function",
            "function": {"name": draw(names), "arguments": draw(arguments)},
        }
        for i in ids
    ]
    content = draw(st.none() | texts)
    messages.append({"role": "assistant", "content": content, "tool_calls": calls})
    messages += [{"role": "tool", "tool_call_id": i, "content": draw(texts)} for i in ids]
    return messages


@st.composite
def openai_requests(draw: st.DrawFn) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(texts)})
    for exchange in draw(st.lists(exchanges(), min_size=1, max_size=3)):
        messages += exchange
    request: dict[str, Any] = {
        "model": "m",
        "messages": messages,
        "max_tokens": draw(st.integers(1, 10_000)),
    }
    optional = {
        "temperature": st.floats(0, 1),
        "top_p": st.floats(0, 1),
        "stop": st.lists(texts, min_size=1, max_size=3),
        "user": texts,
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            request[name] = draw(strategy)
    tool_names = draw(st.lists(names, max_size=3, unique=True))
    if tool_names:
        request["tools"] = [
            {
                "type": "function",
                "function": {"name": n, "parameters": {"type": "object", "properties": {}}},
            }
            for n in tool_names
        ]
        named = {"type": "function", "function": {"name": tool_names[0]}}
        request["tool_choice"] = draw(st.sampled_from(["auto", "required", "none", named]))
        if request["tool_choice"] != "none" and draw(st.booleans()):
            request["parallel_tool_calls"] = False
    return request


@settings(max_examples=60, deadline=None)
@given(openai_requests())
def test_openai_to_anthropic_and_back_keeps_messages_tools_and_parameters(
    request: dict[str, Any],
) -> None:
    back = to_openai_request(to_messages_body(request))
    validate_openai("CreateChatCompletionRequest", back)
    assert back == request
