"""The Gemini adapter's translations as pure functions: no server, no network."""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson
import pytest

from capstan.gateway.providers.base import FailureKind, TranslationError, UpstreamError
from capstan.gateway.providers.gemini_request import (
    gemini_embed_request,
    gemini_request,
    gemini_schema,
)
from capstan.gateway.providers.gemini_response import (
    StreamTranslator,
    embeddings,
    finish_reason,
    retry_delay,
    upstream_failure,
    usage,
)

CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}


def user(text: str = "hi") -> dict[str, Any]:
    return {"role": "user", "content": text}


def translation_error(request: dict[str, Any]) -> TranslationError:
    with pytest.raises(TranslationError) as caught:
        gemini_request(request)
    return caught.value


def test_system_and_developer_messages_join_the_system_instruction() -> None:
    body = gemini_request(
        {
            "messages": [
                {"role": "system", "content": "one"},
                {"role": "developer", "content": [{"type": "text", "text": "two"}]},
                user(),
            ]
        }
    )
    assert body["systemInstruction"] == {"parts": [{"text": "one"}, {"text": "two"}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]


def test_consecutive_tool_results_share_one_turn() -> None:
    second = {**CALL, "id": "call_2", "function": {"name": "g", "arguments": "{}"}}
    body = gemini_request(
        {
            "messages": [
                user(),
                {"role": "assistant", "content": None, "tool_calls": [CALL, second]},
                {"role": "tool", "tool_call_id": "call_1", "content": '{"ok": true}'},
                {"role": "tool", "tool_call_id": "call_2", "content": "plain text"},
            ]
        }
    )
    assert body["contents"][1] == {
        "role": "model",
        "parts": [
            {"functionCall": {"name": "f", "args": {"a": 1}}},
            {"functionCall": {"name": "g", "args": {}}},
        ],
    }
    assert body["contents"][2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "f", "response": {"ok": True}}},
            {"functionResponse": {"name": "g", "response": {"result": "plain text"}}},
        ],
    }


def test_tool_result_for_an_unknown_call_is_refused() -> None:
    error = translation_error(
        {"messages": [user(), {"role": "tool", "tool_call_id": "nope", "content": "x"}]}
    )
    assert error.param == "messages[1].tool_call_id"


def test_invalid_tool_call_arguments_are_refused() -> None:
    bad = {**CALL, "function": {"name": "f", "arguments": "not json"}}
    error = translation_error({"messages": [user(), {"role": "assistant", "tool_calls": [bad]}]})
    assert error.param == "messages[1].tool_calls[0].function.arguments"


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("none", {"mode": "NONE"}),
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "f"}},
            {"mode": "ANY", "allowedFunctionNames": ["f"]},
        ),
    ],
)
def test_tool_choice(choice: Any, config: dict[str, Any]) -> None:
    body = gemini_request({"messages": [user()], "tool_choice": choice})
    assert body["toolConfig"] == {"functionCallingConfig": config}


def test_schema_drops_keywords_gemini_rejects() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"when": {"type": "string", "format": "uri"}},
        "additionalProperties": False,
    }
    assert gemini_schema(schema) == (
        "openapi",
        {"type": "object", "properties": {"when": {"type": "string"}}},
    )


def test_schema_nullable_types() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": ["string", "null"]},
            "b": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        },
    }
    _, converted = gemini_schema(schema)
    assert converted["properties"] == {
        "a": {"type": "string", "nullable": True},
        "b": {"type": "integer", "nullable": True},
    }


def test_schema_with_refs_goes_to_json_schema_field() -> None:
    schema = {
        "type": "object",
        "properties": {"p": {"$ref": "#/$defs/P"}},
        "$defs": {"P": {"type": "string"}},
    }
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    body = gemini_request({"messages": [user()], "tools": [tool]})
    declaration = body["tools"][0]["functionDeclarations"][0]
    assert declaration == {"name": "f", "parametersJsonSchema": schema}


def test_parameterless_tool_has_no_parameters() -> None:
    tool = {"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}}
    body = gemini_request({"messages": [user()], "tools": [tool]})
    assert body["tools"] == [{"functionDeclarations": [{"name": "now"}]}]


def test_generation_config() -> None:
    body = gemini_request(
        {
            "messages": [user()],
            "max_completion_tokens": 9,
            "temperature": 0.5,
            "top_p": 0.9,
            "stop": "END",
            "n": 2,
            "seed": 1,
            "response_format": {"type": "json_object"},
            "reasoning_effort": "low",
        }
    )
    assert body["generationConfig"] == {
        "maxOutputTokens": 9,
        "temperature": 0.5,
        "topP": 0.9,
        "seed": 1,
        "stopSequences": ["END"],
        "candidateCount": 2,
        "responseMimeType": "application/json",
        "thinkingConfig": {"thinkingBudget": 1024},
    }


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"stop": ["a", "b", "c", "d", "e", "f"]}, "stop"),
        ({"n": 9}, "n"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type"),
    ],
)
def test_inexpressible_parameters_are_named(extra: dict[str, Any], param: str) -> None:
    assert translation_error({"messages": [user()], **extra}).param == param


def test_audio_input_is_inline_data() -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    body = gemini_request({"messages": [{"role": "user", "content": [audio]}]})
    assert body["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "audio/wav", "data": "AAAA"}}
    ]


def test_embedding_token_arrays_are_refused() -> None:
    with pytest.raises(TranslationError) as caught:
        gemini_embed_request({"input": [[1, 2, 3]]}, "models/m")
    assert caught.value.param == "input"


def test_embedding_request_body() -> None:
    texts, body = gemini_embed_request({"input": "x", "dimensions": 8}, "models/m")
    assert texts == ["x"]
    assert body == {
        "requests": [
            {"model": "models/m", "content": {"parts": [{"text": "x"}]}, "outputDimensionality": 8}
        ]
    }


@pytest.mark.parametrize(
    ("gemini", "called", "openai"),
    [
        ("STOP", False, "stop"),
        ("STOP", True, "tool_calls"),
        ("MAX_TOKENS", False, "length"),
        ("SAFETY", False, "content_filter"),
        ("RECITATION", False, "content_filter"),
        ("MALFORMED_FUNCTION_CALL", False, "stop"),
    ],
)
def test_finish_reason(gemini: str, called: bool, openai: str) -> None:
    assert finish_reason(gemini, called) == openai


def test_usage_counts_thoughts_as_completion_and_tool_use_as_prompt() -> None:
    assert usage(
        {
            "promptTokenCount": 10,
            "toolUsePromptTokenCount": 2,
            "candidatesTokenCount": 5,
            "thoughtsTokenCount": 7,
            "cachedContentTokenCount": 4,
            "totalTokenCount": 24,
        }
    ) == {
        "prompt_tokens": 12,
        "completion_tokens": 12,
        "total_tokens": 24,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 7},
    }


def _error_body(code: int, message: str, details: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message, "details": details}})


def test_invalid_key_400_is_authentication() -> None:
    body = _error_body(400, "API key not valid.", [{"reason": "API_KEY_INVALID"}])
    assert upstream_failure(400, body, {}).kind is FailureKind.AUTHENTICATION


def test_token_overflow_is_context_length() -> None:
    message = (
        "The input token count (2000000) exceeds the maximum number of tokens allowed (1048576)."
    )
    assert (
        upstream_failure(400, _error_body(400, message, []), {}).kind is FailureKind.CONTEXT_LENGTH
    )


def test_retry_delay_reads_fractional_seconds() -> None:
    detail = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "58.934310785s"}
    assert retry_delay([detail]) == pytest.approx(58.934310785)


def test_stream_closed_before_finish_is_malformed() -> None:
    translator = StreamTranslator("m", 0)
    translator.feed({"candidates": [{"content": {"parts": [{"text": "half"}]}, "index": 0}]})
    with pytest.raises(UpstreamError) as caught:
        translator.usage_chunk()
    assert caught.value.kind is FailureKind.MALFORMED


def test_error_event_in_a_stream_raises() -> None:
    translator = StreamTranslator("m", 0)
    with pytest.raises(UpstreamError) as caught:
        translator.feed({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}})
    assert caught.value.kind is FailureKind.OVERLOADED


def test_thought_parts_are_not_content() -> None:
    translator = StreamTranslator("m", 0)
    chunks = translator.feed(
        {
            "candidates": [
                {
                    "content": {"parts": [{"text": "hmm", "thought": True}, {"text": "Hi"}]},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ]
        }
    )
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Hi"},
        {},
    ]


def test_embeddings_base64_is_little_endian_float32() -> None:
    body = {"embeddings": [{"values": [0.5, -1.0]}]}
    result = embeddings(body, ["x"], model="m", encoding_format="base64")
    raw = base64.b64decode(result["data"][0]["embedding"])
    assert struct.unpack("<2f", raw) == (0.5, -1.0)


def test_embedding_usage_is_estimated_when_gemini_omits_it() -> None:
    body = {"embeddings": [{"values": [0.1]}]}
    result = embeddings(body, ["twelve chars"], model="m", encoding_format=None)
    assert result["usage"] == {"prompt_tokens": 3, "total_tokens": 3}


def test_gemini_3_function_calls_get_the_signature_sentinel() -> None:
    messages = [user(), {"role": "assistant", "tool_calls": [CALL, {**CALL, "id": "call_2"}]}]
    parts = gemini_request({"messages": messages}, "gemini-3-flash")["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == "skip_thought_signature_validator"
    assert "thoughtSignature" not in parts[1]
