"""GeminiProvider against the simulator's Gemini API, over Capstan's real upstream client."""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import orjson
import pytest

from capstan.gateway.providers.base import (
    ChatChunk,
    FailureKind,
    TranslationError,
    Upstream,
    UpstreamError,
)
from capstan.gateway.providers.gemini import GeminiProvider
from capstan.gateway.upstream_client import UpstreamClient
from capstan.testing.simulator.gemini_replies import BLOCK_TRIGGER, IMAGE_TOKENS, SAFETY_TRIGGER
from tests.provider_session import with_session
from tests.servers import RunningServer
from tests.simulator_fixtures import last_body, set_faults, user

T = TypeVar("T")
PROVIDER = GeminiProvider()
PNG_URL = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


pytestmark = pytest.mark.usefixtures("simulator_state")


@pytest.fixture(scope="module")
def server(simulator: RunningServer) -> RunningServer:
    """The module's simulator, by the name these tests use."""
    return simulator


@pytest.fixture
def upstream(server: RunningServer) -> Upstream:
    return Upstream(
        provider="google",
        kind="gemini",
        base_url=f"{server.url}/v1beta",
        model="gemini-2.0-flash",
        api_key="test-key",
        timeout_s=10,
    )


def chat(upstream: Upstream, **request: Any) -> dict[str, Any]:
    return with_session(lambda http: PROVIDER.chat(http, upstream, request))


def stream(upstream: Upstream, **request: Any) -> list[ChatChunk]:
    async def collect(http: UpstreamClient) -> list[ChatChunk]:
        return [chunk async for chunk in PROVIDER.stream_chat(http, upstream, request)]

    return with_session(collect)


def failure(call: Callable[[], object]) -> UpstreamError:
    with pytest.raises(UpstreamError) as caught:
        call()
    return caught.value


def test_chat_returns_an_openai_completion(upstream: Upstream) -> None:
    result = chat(upstream, messages=user("hello gemini"))
    assert result["object"] == "chat.completion"
    assert result["id"].startswith("chatcmpl-")
    choice = result["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].startswith("Echo: hello gemini.")
    assert choice["finish_reason"] == "stop"
    words = len(choice["message"]["content"].split())
    assert result["usage"]["prompt_tokens"] == 2
    assert result["usage"]["completion_tokens"] == words
    assert result["usage"]["total_tokens"] == 2 + words


def test_stream_joins_to_the_same_text(upstream: Upstream) -> None:
    whole = chat(upstream, messages=user("stream this"), seed=3)
    chunks = stream(upstream, messages=user("stream this"), seed=3)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_stream_ends_with_one_usage_chunk(upstream: Upstream) -> None:
    whole = chat(upstream, messages=user("usage please"), seed=4)
    chunks = stream(upstream, messages=user("usage please"), seed=4)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == whole["usage"]
    assert [c for c in chunks if "usage" in c] == [chunks[-1]]


def test_system_prompt_reaches_system_instruction(
    upstream: Upstream, server: RunningServer
) -> None:
    messages = [{"role": "system", "content": "be brief"}, *user("hi")]
    chat(upstream, messages=messages)
    body = last_body(server)
    assert body["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]


def test_tools_produce_tool_calls(upstream: Upstream) -> None:
    result = chat(upstream, messages=user("weather in Oslo"), tools=[WEATHER_TOOL])
    choice = result["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    assert set(orjson.loads(call["function"]["arguments"])) == {"city"}


def test_tool_round_trip_translates_calls_and_results(
    upstream: Upstream, server: RunningServer
) -> None:
    first = chat(upstream, messages=user("weather in Oslo"), tools=[WEATHER_TOOL])
    assistant = first["choices"][0]["message"]
    call = assistant["tool_calls"][0]
    messages = [
        *user("weather in Oslo"),
        assistant,
        {"role": "tool", "tool_call_id": call["id"], "content": '{"temp": 4}'},
    ]
    second = chat(upstream, messages=messages, tools=[WEATHER_TOOL])
    assert second["choices"][0]["finish_reason"] == "stop"
    assert "get_weather" in second["choices"][0]["message"]["content"]
    contents = last_body(server)["contents"]
    assert contents[1]["parts"][0]["functionCall"]["name"] == "get_weather"
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"temp": 4}}}
    ]


def test_streamed_tool_call(upstream: Upstream) -> None:
    chunks = stream(
        upstream, messages=user("weather?"), tools=[WEATHER_TOOL], tool_choice="required"
    )
    deltas = [c["choices"][0] for c in chunks if c["choices"]]
    calls = [d["delta"]["tool_calls"][0] for d in deltas if "tool_calls" in d["delta"]]
    assert len(calls) == 1
    assert calls[0]["index"] == 0
    assert calls[0]["function"]["name"] == "get_weather"
    assert deltas[-1]["finish_reason"] == "tool_calls"


def test_image_travels_as_inline_data(upstream: Upstream, server: RunningServer) -> None:
    content = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": PNG_URL}},
    ]
    result = chat(upstream, messages=[{"role": "user", "content": content}])
    part = last_body(server)["contents"][0]["parts"][1]
    assert part == {"inlineData": {"mimeType": "image/png", "data": PNG_URL.split(",", 1)[1]}}
    assert result["usage"]["prompt_tokens"] == 3 + IMAGE_TOKENS


def test_http_image_url_is_a_translation_error(upstream: Upstream) -> None:
    content = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    with pytest.raises(TranslationError) as caught:
        chat(upstream, messages=[{"role": "user", "content": content}])
    assert caught.value.param == "messages[0].content[0].image_url"


def test_max_tokens_stops_with_length(upstream: Upstream) -> None:
    result = chat(upstream, messages=user("long"), max_tokens=2)
    assert result["choices"][0]["finish_reason"] == "length"
    assert result["usage"]["completion_tokens"] == 2


def test_stop_sequence_cuts_the_text(upstream: Upstream) -> None:
    result = chat(upstream, messages=user("alpha beta gamma"), stop=["beta"])
    assert result["choices"][0]["message"]["content"] == "Echo: alpha"
    assert result["choices"][0]["finish_reason"] == "stop"


def test_safety_stop_is_content_filter(upstream: Upstream) -> None:
    result = chat(upstream, messages=user(f"hm {SAFETY_TRIGGER}"))
    assert result["choices"][0]["finish_reason"] == "content_filter"
    assert result["choices"][0]["message"]["content"] == ""


def test_blocked_prompt_is_content_policy(upstream: Upstream) -> None:
    error = failure(lambda: chat(upstream, messages=user(f"hm {BLOCK_TRIGGER}")))
    assert error.kind is FailureKind.CONTENT_POLICY


def test_repeated_prefix_reports_cached_tokens(upstream: Upstream) -> None:
    cached_upstream = replace(upstream, model="gemini-2.0-flash-cache-provider")
    system = {"role": "system", "content": " ".join(f"policy{i}" for i in range(50))}
    first = chat(cached_upstream, messages=[system, *user("one")])
    second = chat(cached_upstream, messages=[system, *user("two")])
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == 50
    assert second["usage"]["prompt_tokens"] == 51


def test_thinking_tokens_count_as_reasoning(upstream: Upstream) -> None:
    result = chat(replace(upstream, model="gemini-2.5-flash"), messages=user("think"))
    usage = result["usage"]
    reasoning = usage["completion_tokens_details"]["reasoning_tokens"]
    assert reasoning > 0
    words = len(result["choices"][0]["message"]["content"].split())
    assert usage["completion_tokens"] == words + reasoning
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_reasoning_effort_none_turns_thinking_off(upstream: Upstream) -> None:
    thinking = replace(upstream, model="gemini-2.5-flash")
    result = chat(thinking, messages=user("quick"), reasoning_effort="none")
    assert result["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0


def test_json_schema_response_format(upstream: Upstream, server: RunningServer) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    response_format = {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}
    result = chat(upstream, messages=user("n?"), response_format=response_format)
    assert isinstance(orjson.loads(result["choices"][0]["message"]["content"])["n"], int)
    assert last_body(server)["generationConfig"]["responseSchema"] == schema


def test_n_gives_several_choices(upstream: Upstream) -> None:
    result = chat(upstream, messages=user("two please"), n=2)
    assert [c["index"] for c in result["choices"]] == [0, 1]


def test_logprobs_are_mapped(upstream: Upstream) -> None:
    result = chat(upstream, messages=user("probs"), logprobs=True, top_logprobs=2)
    content = result["choices"][0]["logprobs"]["content"]
    assert "".join(t["token"] for t in content) == result["choices"][0]["message"]["content"]
    assert all(len(t["top_logprobs"]) == 2 for t in content)


def test_embeddings_as_floats(upstream: Upstream) -> None:
    embedder = replace(upstream, model="gemini-embedding-001")
    request = {"model": "gemini-embedding-001", "input": ["a b", "c"], "dimensions": 8}
    result = with_session(lambda http: PROVIDER.embed(http, embedder, request))
    assert result["object"] == "list"
    assert [d["index"] for d in result["data"]] == [0, 1]
    assert all(len(d["embedding"]) == 8 for d in result["data"])
    assert result["usage"] == {"prompt_tokens": 3, "total_tokens": 3}


def test_embeddings_as_base64_float32(upstream: Upstream) -> None:
    embedder = replace(upstream, model="gemini-embedding-001")
    floats = with_session(
        lambda http: PROVIDER.embed(http, embedder, {"input": "x", "dimensions": 4})
    )
    packed = with_session(
        lambda http: PROVIDER.embed(
            http, embedder, {"input": "x", "dimensions": 4, "encoding_format": "base64"}
        )
    )
    decoded = struct.unpack("<4f", base64.b64decode(packed["data"][0]["embedding"]))
    assert decoded == pytest.approx(floats["data"][0]["embedding"], rel=1e-6)


def test_rate_limit_carries_the_retry_delay(upstream: Upstream, server: RunningServer) -> None:
    set_faults(server, "gemini-2.0-flash", burst_429=1, retry_after_s=7)
    error = failure(lambda: chat(upstream, messages=user("x")))
    assert error.kind is FailureKind.RATE_LIMITED
    assert error.status == 429
    assert error.retry_after == 7.0


def test_rejected_key_is_authentication(upstream: Upstream) -> None:
    error = failure(lambda: chat(replace(upstream, api_key="bad-key"), messages=user("x")))
    assert error.kind is FailureKind.AUTHENTICATION
    assert error.message == "API key not valid. Please pass a valid API key."


def test_missing_key_is_authentication(upstream: Upstream) -> None:
    error = failure(lambda: chat(replace(upstream, api_key=None), messages=user("x")))
    assert error.kind is FailureKind.AUTHENTICATION


def test_unknown_model_is_not_found(upstream: Upstream) -> None:
    error = failure(lambda: chat(replace(upstream, model="unknown-gemini"), messages=user("x")))
    assert error.kind is FailureKind.NOT_FOUND


@pytest.mark.parametrize(
    ("status", "kind"), [(503, FailureKind.OVERLOADED), (500, FailureKind.SERVER)]
)
def test_server_faults(
    upstream: Upstream, server: RunningServer, status: int, kind: FailureKind
) -> None:
    set_faults(server, "gemini-2.0-flash", error_rate=1.0, error_status=status)
    error = failure(lambda: stream(upstream, messages=user("x")))
    assert error.kind is kind


def test_cut_stream_is_a_connection_failure(upstream: Upstream, server: RunningServer) -> None:
    set_faults(server, "gemini-2.0-flash", cut_after_chunks=2)
    error = failure(lambda: stream(upstream, messages=user("cut me")))
    assert error.kind is FailureKind.CONNECTION


def test_gemini_3_tool_round_trip_passes_signature_validation(upstream: Upstream) -> None:
    gemini3 = replace(upstream, model="gemini-3-pro-preview")
    first = chat(gemini3, messages=user("weather in Rome"), tools=[WEATHER_TOOL])
    assistant = first["choices"][0]["message"]
    call_id = assistant["tool_calls"][0]["id"]
    messages = [
        *user("weather in Rome"),
        assistant,
        {"role": "tool", "tool_call_id": call_id, "content": "sunny"},
    ]
    second = chat(gemini3, messages=messages, tools=[WEATHER_TOOL])
    assert second["choices"][0]["finish_reason"] == "stop"


def test_prompt_over_the_window_is_context_length(
    upstream: Upstream, server: RunningServer
) -> None:
    set_faults(server, "gemini-2.0-flash", context_window=3)
    error = failure(lambda: chat(upstream, messages=user("one two three four")))
    assert error.kind is FailureKind.CONTEXT_LENGTH
    assert error.status == 400
