"""OpenAI <-> Bedrock Converse translation, as plain functions on plain data (no server)."""

from __future__ import annotations

from typing import Any

import pytest

from capstan.gateway.providers.base import FailureKind, TranslationError, Upstream, UpstreamError
from capstan.gateway.providers.bedrock import bedrock_url, region_of, signed_headers
from capstan.gateway.providers.bedrock_translate import (
    ConverseStreamTranslator,
    finish_reason,
    from_converse,
    to_converse,
    usage_from,
)

USER = {"role": "user", "content": "hi"}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
CALLS = [
    {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
    {"id": "b", "type": "function", "function": {"name": "f", "arguments": ""}},
]


def converse(**request: Any) -> dict[str, Any]:
    return to_converse({"messages": [USER], **request})


def test_consecutive_tool_results_become_one_user_turn() -> None:
    messages = [
        USER,
        {"role": "assistant", "content": None, "tool_calls": CALLS},
        {"role": "tool", "tool_call_id": "a", "content": "one"},
        {"role": "tool", "tool_call_id": "b", "content": "two"},
    ]
    turns = to_converse({"messages": messages, "tools": [TOOL]})["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert [b["toolResult"]["toolUseId"] for b in turns[2]["content"]] == ["a", "b"]
    assert turns[2]["content"][0]["toolResult"]["content"] == [{"text": "one"}]


def test_assistant_tool_calls_become_tool_use_blocks() -> None:
    messages = [USER, {"role": "assistant", "content": "let me see", "tool_calls": CALLS}]
    assistant = to_converse({"messages": messages})["messages"][1]["content"]
    assert assistant == [
        {"text": "let me see"},
        {"toolUse": {"toolUseId": "a", "name": "f", "input": {"x": 1}}},
        {"toolUse": {"toolUseId": "b", "name": "f", "input": {}}},
    ]


def test_tool_arguments_that_are_not_json_name_their_param() -> None:
    bad = [{"id": "a", "function": {"name": "f", "arguments": "{nope"}}]
    with pytest.raises(TranslationError) as excinfo:
        to_converse({"messages": [USER, {"role": "assistant", "tool_calls": bad}]})
    assert excinfo.value.param == "messages[1].tool_calls[0].function.arguments"


def test_system_and_developer_messages_become_system_blocks() -> None:
    messages = [
        {"role": "system", "content": "one"},
        USER,
        {"role": "developer", "content": [{"type": "text", "text": "two"}]},
    ]
    body = to_converse({"messages": messages})
    assert body["system"] == [{"text": "one"}, {"text": "two"}]
    assert body["messages"] == [{"role": "user", "content": [{"text": "hi"}]}]


def test_cache_control_adds_a_cache_point_after_its_part() -> None:
    part = {"type": "text", "text": "stable", "cache_control": {"type": "ephemeral"}}
    body = to_converse({"messages": [{"role": "system", "content": [part]}, USER]})
    assert body["system"] == [{"text": "stable"}, {"cachePoint": {"type": "default"}}]


def test_blank_text_is_dropped() -> None:
    messages = [USER, {"role": "assistant", "content": "  "}, {"role": "user", "content": "again"}]
    turns = to_converse({"messages": messages})["messages"]
    assert turns == [{"role": "user", "content": [{"text": "hi"}, {"text": "again"}]}]


def test_sampling_parameters_become_inference_config() -> None:
    body = converse(max_tokens=10, max_completion_tokens=20, temperature=0.2, top_p=0.9, stop="##")
    assert body["inferenceConfig"] == {
        "maxTokens": 20,
        "temperature": 0.2,
        "topP": 0.9,
        "stopSequences": ["##"],
    }


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ("auto", {"auto": {}}),
        ("required", {"any": {}}),
        ({"type": "function", "function": {"name": "f"}}, {"tool": {"name": "f"}}),
    ],
)
def test_tool_choice_maps_to_converse(tool_choice: Any, expected: dict[str, Any]) -> None:
    assert converse(tools=[TOOL], tool_choice=tool_choice)["toolConfig"]["toolChoice"] == expected


def test_tool_choice_none_offers_no_tools() -> None:
    assert "toolConfig" not in converse(tools=[TOOL], tool_choice="none")


def test_tools_become_tool_specs() -> None:
    assert converse(tools=[TOOL])["toolConfig"] == {
        "tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}]
    }


@pytest.mark.parametrize(
    ("part", "param"),
    [
        ({"type": "input_audio", "input_audio": {}}, "messages[0].content[0]"),
        (
            {"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}},
            "messages[0].content[0].image_url.url",
        ),
    ],
)
def test_unsupported_parts_name_their_param(part: dict[str, Any], param: str) -> None:
    with pytest.raises(TranslationError) as excinfo:
        to_converse({"messages": [{"role": "user", "content": [part]}]})
    assert excinfo.value.param == param


@pytest.mark.parametrize(
    ("field", "value"),
    [("top_logprobs", 3), ("presence_penalty", 0.5), ("reasoning_effort", "high")],
)
def test_other_untranslatable_parameters_are_refused(field: str, value: Any) -> None:
    with pytest.raises(TranslationError) as excinfo:
        converse(**{field: value})
    assert excinfo.value.param == field


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("tool_use", "tool_calls"),
        ("max_tokens", "length"),
        ("content_filtered", "content_filter"),
        ("guardrail_intervened", "content_filter"),
    ],
)
def test_stop_reasons_map_to_finish_reasons(stop_reason: str, expected: str) -> None:
    assert finish_reason(stop_reason) == expected


def test_usage_counts_cached_tokens_as_prompt_tokens() -> None:
    usage = {
        "inputTokens": 10,
        "outputTokens": 4,
        "cacheReadInputTokens": 100,
        "cacheWriteInputTokens": 7,
    }
    assert usage_from(usage) == {
        "prompt_tokens": 117,
        "completion_tokens": 4,
        "total_tokens": 121,
        "prompt_tokens_details": {"cached_tokens": 100, "cache_creation_tokens": 7},
    }


def test_a_tool_use_answer_has_null_content_and_tool_calls() -> None:
    data = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [{"toolUse": {"toolUseId": "t1", "name": "f", "input": {"x": 1}}}],
            }
        },
        "stopReason": "tool_use",
        "usage": {},
    }
    message = from_converse(data, "m")["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {"id": "t1", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}}
    ]


def test_reasoning_comes_back_as_reasoning_content() -> None:
    reasoning = {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "s"}}}
    data = {"output": {"message": {"content": [reasoning, {"text": "yes"}]}}, "stopReason": "x"}
    message = from_converse(data, "m")["choices"][0]["message"]
    assert (message["reasoning_content"], message["content"]) == ("hmm", "yes")


def test_an_answer_without_output_is_malformed() -> None:
    with pytest.raises(UpstreamError) as excinfo:
        from_converse({"message": "?"}, "m")
    assert excinfo.value.kind is FailureKind.MALFORMED


def test_stream_tool_calls_are_numbered_apart_from_content_blocks() -> None:
    translator = ConverseStreamTranslator("m")
    start = {"start": {"toolUse": {"toolUseId": "t", "name": "f"}}, "contentBlockIndex": 1}
    [opened] = translator.chunks("contentBlockStart", start)
    delta = {"delta": {"toolUse": {"input": "{}"}}, "contentBlockIndex": 1}
    [streamed] = translator.chunks("contentBlockDelta", delta)
    assert opened["choices"][0]["delta"]["tool_calls"][0]["index"] == 0
    assert streamed["choices"][0]["delta"]["tool_calls"] == [
        {"index": 0, "function": {"arguments": "{}"}}
    ]


def test_stream_reasoning_deltas_become_reasoning_content() -> None:
    translator = ConverseStreamTranslator("m")
    delta = {"delta": {"reasoningContent": {"text": "hmm"}}, "contentBlockIndex": 0}
    [chunk] = translator.chunks("contentBlockDelta", delta)
    assert chunk["choices"][0]["delta"] == {"reasoning_content": "hmm"}
    signature = {"delta": {"reasoningContent": {"signature": "s"}}, "contentBlockIndex": 0}
    assert translator.chunks("contentBlockDelta", signature) == []


def test_the_stream_finishes_on_metadata_with_usage() -> None:
    translator = ConverseStreamTranslator("m")
    [chunk] = translator.chunks("metadata", {"usage": {"inputTokens": 1, "outputTokens": 2}})
    assert translator.finished
    assert chunk["choices"] == []
    assert chunk["usage"]["total_tokens"] == 3


def test_the_default_endpoint_is_regional_and_the_model_id_encoded() -> None:
    upstream = Upstream("aws", "bedrock", "", "a/b:1", options={"region": "ap-south-1"})
    assert bedrock_url(upstream, "converse") == (
        "https://bedrock-runtime.ap-south-1.amazonaws.com/model/a%2Fb:1/converse"
    )


def test_the_region_is_read_from_a_standard_endpoint() -> None:
    upstream = Upstream("aws", "bedrock", "https://bedrock-runtime.us-west-2.amazonaws.com", "m")
    assert region_of(upstream) == "us-west-2"


def test_signing_without_credentials_is_an_authentication_failure() -> None:
    upstream = Upstream("aws", "bedrock", "", "m", options={"region": "us-east-1"})
    with pytest.raises(UpstreamError) as excinfo:
        signed_headers(upstream, "https://example.com/model/m/converse", b"{}", accept="*/*")
    assert excinfo.value.kind is FailureKind.AUTHENTICATION
