"""AnthropicProvider and the native pass-through over real HTTP against the upstream simulator,
and the Anthropic dialect's output read back by the official Anthropic SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

import anthropic
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from capstan.gateway.dialects.anthropic import (
    AnthropicStreamTranslator,
    sse_bytes,
    to_anthropic_message,
    to_openai_request,
)
from capstan.gateway.providers.anthropic import AnthropicProvider, messages, stream_messages
from capstan.gateway.providers.base import (
    FailureKind,
    Provider,
    TranslationError,
    Upstream,
    UpstreamError,
)
from capstan.gateway.upstream_client import UpstreamClient
from tests import simulator_fixtures
from tests.openai_spec import validate_openai
from tests.provider_session import with_session
from tests.servers import RunningServer, start_asgi
from tests.simulator_fixtures import received

MODEL = "claude-sim"
PROVIDER: Provider = AnthropicProvider()  # mypy checks it satisfies the protocol
T = TypeVar("T")


pytestmark = pytest.mark.usefixtures("simulator_state")


def upstream_at(server: RunningServer, **fields: Any) -> Upstream:
    fields.setdefault("model", MODEL)
    fields.setdefault("api_key", "sk-ant-test")
    fields.setdefault("base_url", server.url)
    return Upstream(provider="anthropic", kind="anthropic", timeout_s=10, **fields)


def chat(upstream: Upstream, request: dict[str, Any]) -> dict[str, Any]:
    return with_session(lambda http: PROVIDER.chat(http, upstream, request))


def stream_chat(upstream: Upstream, request: dict[str, Any]) -> list[dict[str, Any]]:
    async def collect(http: UpstreamClient) -> list[dict[str, Any]]:
        return [chunk async for chunk in PROVIDER.stream_chat(http, upstream, request)]

    return with_session(collect)


def set_faults(server: RunningServer, **faults: Any) -> None:
    simulator_fixtures.set_faults(server, MODEL, **faults)


def ask(text: str, **params: Any) -> dict[str, Any]:
    return {"model": "alias", "messages": [{"role": "user", "content": text}], **params}


def streamed_text(chunks: list[dict[str, Any]], field: str = "content") -> str:
    return "".join(c["choices"][0]["delta"].get(field) or "" for c in chunks if c["choices"])


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


# --- AnthropicProvider ----------------------------------------------------------------------


def test_chat_returns_an_openai_completion(simulator: RunningServer) -> None:
    completion = chat(upstream_at(simulator), ask("hello there"))
    validate_openai("CreateChatCompletionResponse", completion)
    assert completion["choices"][0]["message"]["content"].startswith("Echo: hello there.")
    assert completion["choices"][0]["finish_reason"] == "stop"


def test_stream_joins_to_the_same_text_and_ends_with_usage(simulator: RunningServer) -> None:
    upstream = upstream_at(simulator)
    whole = chat(upstream, ask("stream me"))
    chunks = stream_chat(upstream, ask("stream me"))
    for chunk in chunks:
        validate_openai("CreateChatCompletionStreamResponse", chunk)
    assert streamed_text(chunks) == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == whole["usage"]


def test_system_prompt_and_version_header_reach_the_upstream(simulator: RunningServer) -> None:
    request = ask("hi")
    request["messages"].insert(0, {"role": "system", "content": "Be brief."})
    chat(upstream_at(simulator), request)
    sent = received(simulator)[-1]
    assert sent["path"] == "/v1/messages"
    assert sent["body"]["system"] == [{"type": "text", "text": "Be brief."}]
    assert sent["body"]["model"] == MODEL
    assert sent["headers"]["anthropic-version"] == "2023-06-01"


def test_base_url_with_v1_suffix_still_reaches_messages(simulator: RunningServer) -> None:
    upstream = upstream_at(simulator, base_url=f"{simulator.url}/v1/")
    assert chat(upstream, ask("hi"))["choices"][0]["message"]["content"]


def test_tool_call_round_trip(simulator: RunningServer) -> None:
    upstream = upstream_at(simulator)
    first = chat(upstream, ask("weather in Oslo?", tools=[WEATHER_TOOL], tool_choice="required"))
    assert first["choices"][0]["finish_reason"] == "tool_calls"
    call = first["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "weather"
    follow_up = ask("weather in Oslo?", tools=[WEATHER_TOOL])
    follow_up["messages"] += [
        first["choices"][0]["message"],
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny and mild"},
    ]
    second = chat(upstream, follow_up)
    assert "sunny and mild" in second["choices"][0]["message"]["content"]


def test_streamed_tool_call_arguments_join_to_json(simulator: RunningServer) -> None:
    chunks = stream_chat(
        upstream_at(simulator), ask("weather?", tools=[WEATHER_TOOL], tool_choice="required")
    )
    calls = [
        call
        for c in chunks
        if c["choices"]
        for call in c["choices"][0]["delta"].get("tool_calls") or []
    ]
    assert calls[0]["function"]["name"] == "weather"
    arguments = "".join(call["function"]["arguments"] for call in calls)
    assert '"city"' in arguments
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_data_url_image_reaches_the_upstream_as_base64(simulator: RunningServer) -> None:
    parts = [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "text", "text": "describe"},
    ]
    completion = chat(
        upstream_at(simulator), {"model": "m", "messages": [{"role": "user", "content": parts}]}
    )
    block = received(simulator)[-1]["body"]["messages"][0]["content"][0]
    assert block["source"] == {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    assert completion["usage"]["prompt_tokens"] > 85  # the simulator counts an image as 85


def test_reasoning_effort_returns_reasoning_content(simulator: RunningServer) -> None:
    completion = chat(upstream_at(simulator), ask("think", reasoning_effort="low", max_tokens=2000))
    message = completion["choices"][0]["message"]
    assert message["reasoning_content"].startswith("Considering:")
    assert message["thinking_blocks"][0]["signature"]


def test_streamed_thinking_arrives_as_reasoning_deltas(simulator: RunningServer) -> None:
    chunks = stream_chat(
        upstream_at(simulator), ask("think", reasoning_effort="low", max_tokens=2000)
    )
    assert streamed_text(chunks, "reasoning_content").startswith("Considering:")


def test_usage_counts_cache_reads_in_the_prompt(simulator: RunningServer) -> None:
    system = [
        {
            "type": "text",
            "text": "a long shared preamble " * 20,
            "cache_control": {"type": "ephemeral"},
        }
    ]
    request = ask("question")
    request["messages"].insert(0, {"role": "system", "content": system})
    upstream = upstream_at(simulator)
    first = chat(upstream, request)["usage"]
    second = chat(upstream, request)["usage"]
    assert first["prompt_tokens_details"]["cache_creation_tokens"] > 0
    assert (
        second["prompt_tokens_details"]["cached_tokens"]
        == first["prompt_tokens_details"]["cache_creation_tokens"]
    )
    assert second["prompt_tokens"] == first["prompt_tokens"]


def test_rate_limit_carries_retry_after(simulator: RunningServer) -> None:
    set_faults(simulator, burst_429=1, retry_after_s=2)
    with pytest.raises(UpstreamError) as caught:
        chat(upstream_at(simulator), ask("hi"))
    assert (caught.value.kind, caught.value.retry_after) == (FailureKind.RATE_LIMITED, 2.0)


def test_529_is_overloaded(simulator: RunningServer) -> None:
    set_faults(simulator, error_rate=1.0, error_status=529)
    with pytest.raises(UpstreamError) as caught:
        chat(upstream_at(simulator), ask("hi"))
    assert caught.value.kind is FailureKind.OVERLOADED


def test_rejected_key_is_an_authentication_failure(simulator: RunningServer) -> None:
    with pytest.raises(UpstreamError) as caught:
        chat(upstream_at(simulator, api_key="bad-key"), ask("hi"))
    assert caught.value.kind is FailureKind.AUTHENTICATION
    assert "bad-key" not in caught.value.message


def test_unknown_model_is_not_found(simulator: RunningServer) -> None:
    with pytest.raises(UpstreamError) as caught:
        chat(upstream_at(simulator, model="unknown-claude"), ask("hi"))
    assert caught.value.kind is FailureKind.NOT_FOUND


def test_stream_cut_short_is_a_connection_failure(simulator: RunningServer) -> None:
    set_faults(simulator, cut_after_chunks=2)
    with pytest.raises(UpstreamError) as caught:
        stream_chat(upstream_at(simulator), ask("a long enough prompt to stream"))
    assert caught.value.kind is FailureKind.CONNECTION


def test_untranslatable_request_never_reaches_the_upstream(simulator: RunningServer) -> None:
    with pytest.raises(TranslationError):
        stream_chat(upstream_at(simulator), ask("hi", n=3))
    assert received(simulator) == []


def test_embeddings_are_refused() -> None:
    upstream = Upstream(provider="a", kind="anthropic", base_url="http://127.0.0.1:9", model=MODEL)
    with pytest.raises(TranslationError):
        with_session(lambda http: PROVIDER.embed(http, upstream, {"model": MODEL, "input": "x"}))


# --- native pass-through --------------------------------------------------------------------

NATIVE_BODY = {
    "model": "client-alias",
    "max_tokens": 100,
    "system": [{"type": "text", "text": "rules " * 10, "cache_control": {"type": "ephemeral"}}],
    "messages": [{"role": "user", "content": "hello native"}],
}


def test_native_messages_pass_the_body_and_beta_header_through(simulator: RunningServer) -> None:
    message = with_session(
        lambda http: messages(http, upstream_at(simulator), NATIVE_BODY, "beta-flag-1")
    )
    assert message["type"] == "message"
    assert message["usage"]["cache_creation_input_tokens"] > 0
    sent = received(simulator)[-1]
    assert sent["headers"]["anthropic-beta"] == "beta-flag-1"
    assert sent["body"]["system"] == NATIVE_BODY["system"]
    assert sent["body"]["model"] == MODEL


def test_native_stream_yields_events_as_received(simulator: RunningServer) -> None:
    async def collect(http: UpstreamClient) -> list[tuple[str, dict[str, Any]]]:
        return [e async for e in stream_messages(http, upstream_at(simulator), NATIVE_BODY, None)]

    events = with_session(collect)
    names = [name for name, _ in events]
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    assert "ping" in names
    assert all(data["type"] == name for name, data in events)


def test_native_errors_raise_upstream_error(simulator: RunningServer) -> None:
    with pytest.raises(UpstreamError) as caught:
        with_session(
            lambda http: messages(http, upstream_at(simulator, model="unknown-x"), NATIVE_BODY)
        )
    assert caught.value.kind is FailureKind.NOT_FOUND


# --- the dialect, read by the Anthropic SDK -------------------------------------------------


def fake_openai_chunks() -> list[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-x",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    call = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city":'},
    }
    return [
        chunk({"role": "assistant", "reasoning_content": "Let me think."}),
        chunk({"content": "Checking "}),
        chunk({"content": "now."}),
        chunk({"tool_calls": [call]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
        chunk({}, "tool_calls"),
        {
            "id": "chatcmpl-x",
            "choices": [],
            "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
        },
    ]


def dialect_app() -> Starlette:
    """A stand-in edge: the dialect's request translation, then a canned OpenAI answer."""

    async def endpoint(request: Request) -> Response:
        body = await request.json()
        openai_request = to_openai_request(body)
        if not openai_request.get("stream"):
            completion = {
                "id": "chatcmpl-x",
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": openai_request["messages"][-1]["content"],
                        },
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
            }
            return JSONResponse(to_anthropic_message(completion, body["model"]))

        async def events() -> AsyncIterator[bytes]:
            translator = AnthropicStreamTranslator(body["model"])
            for chunk in fake_openai_chunks():
                for name, data in translator.feed(chunk):
                    yield sse_bytes(name, data)
            for name, data in translator.finish():
                yield sse_bytes(name, data)

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/messages", endpoint, methods=["POST"])])


@pytest.fixture(scope="module")
def dialect_server() -> Iterator[RunningServer]:
    server = start_asgi(dialect_app())
    yield server
    server.stop()


def test_sdk_reads_a_translated_message(dialect_server: RunningServer) -> None:
    client = anthropic.Anthropic(base_url=dialect_server.url, api_key="k", max_retries=0)
    message = client.messages.create(
        model="claude-alias", max_tokens=50, messages=[{"role": "user", "content": "ping pong"}]
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "ping pong"
    assert (message.stop_reason, message.usage.input_tokens) == ("end_turn", 3)


def test_sdk_accumulates_a_translated_stream(dialect_server: RunningServer) -> None:
    client = anthropic.Anthropic(base_url=dialect_server.url, api_key="k", max_retries=0)
    with client.messages.stream(
        model="claude-alias", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        message = stream.get_final_message()
    assert [block.type for block in message.content] == ["thinking", "text", "tool_use"]
    assert message.content[1].text == "Checking now."  # type: ignore[union-attr]
    assert message.content[2].input == {"city": "Oslo"}  # type: ignore[union-attr]
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 7)
