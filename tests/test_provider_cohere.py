"""CohereProvider against the simulator over the real upstream client: OpenAI shapes in, Cohere
v2 on the wire, OpenAI shapes out, and vendor failures as typed `UpstreamError`s."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any, TypeVar

import pytest

from capstan.gateway.providers.base import (
    ChatChunk,
    FailureKind,
    TranslationError,
    Upstream,
    UpstreamError,
)
from capstan.gateway.providers.cohere import CohereProvider
from capstan.gateway.upstream_client import UpstreamClient
from capstan.testing.simulator.cohere_wire import PROMPT_TEMPLATE_TOKENS
from capstan.testing.simulator.state import Faults, SimulatorState
from capstan.testing.simulator.text import count_tokens
from tests.provider_session import with_session
from tests.servers import RunningServer
from tests.simulator_fixtures import received

T = TypeVar("T")
MODEL = "command-r-plus"
PROVIDER = CohereProvider()
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


pytestmark = pytest.mark.usefixtures("simulator_state")


@pytest.fixture
def state(simulator_state: SimulatorState) -> SimulatorState:
    """The simulator's state (cleared around each test), by the name these tests use."""
    return simulator_state


@pytest.fixture
def upstream(simulator: RunningServer) -> Upstream:
    return Upstream("cohere", "cohere", simulator.url, MODEL, api_key="k", timeout_s=10)


def chat(upstream: Upstream, request: dict[str, Any]) -> dict[str, Any]:
    return with_session(lambda http: PROVIDER.chat(http, upstream, request))


def stream(upstream: Upstream, request: dict[str, Any]) -> list[ChatChunk]:
    async def collect(http: UpstreamClient) -> list[ChatChunk]:
        return [chunk async for chunk in PROVIDER.stream_chat(http, upstream, request)]

    return with_session(collect)


def embed(upstream: Upstream, request: dict[str, Any]) -> dict[str, Any]:
    return with_session(lambda http: PROVIDER.embed(http, upstream, request))


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], **extra}


def streamed_text(chunks: list[ChatChunk]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def test_chat_answers_an_openai_completion(upstream: Upstream) -> None:
    completion = chat(upstream, ask("hello there"))

    assert completion["object"] == "chat.completion"
    choice = completion["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].startswith("Echo: hello there.")
    assert choice["finish_reason"] == "stop"


def test_usage_counts_all_tokens_read_not_just_the_billed_ones(upstream: Upstream) -> None:
    completion = chat(upstream, ask("four words of prompt"))

    usage = completion["usage"]
    assert usage["prompt_tokens"] == 4 + PROMPT_TEMPLATE_TOKENS
    assert usage["completion_tokens"] == count_tokens(
        completion["choices"][0]["message"]["content"]
    )
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_the_system_prompt_reaches_the_upstream(
    upstream: Upstream, simulator: RunningServer
) -> None:
    request = ask("hi")
    request["messages"].insert(0, {"role": "system", "content": "be brief"})

    chat(upstream, request)

    (logged,) = received(simulator)
    assert logged["path"] == "/v2/chat"
    assert logged["body"]["model"] == MODEL
    assert logged["body"]["messages"][0] == {"role": "system", "content": "be brief"}
    assert "stream" not in logged["body"]


def test_cached_prefix_tokens_are_reported_as_cached_tokens(upstream: Upstream) -> None:
    request = ask("first question here")
    request["messages"].insert(0, {"role": "system", "content": "shared rules"})
    chat(upstream, request)
    request["messages"].append({"role": "user", "content": "second"})

    completion = chat(upstream, request)

    assert completion["usage"]["prompt_tokens_details"] == {"cached_tokens": 5}


def test_stream_chunks_join_to_the_plain_answer(upstream: Upstream) -> None:
    plain = chat(upstream, ask("say it twice"))
    chunks = stream(upstream, ask("say it twice"))

    assert streamed_text(chunks) == plain["choices"][0]["message"]["content"]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


def test_stream_ends_with_a_finish_chunk_then_the_only_usage_chunk(upstream: Upstream) -> None:
    chunks = stream(upstream, ask("count me"))

    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 2 + PROMPT_TEMPLATE_TOKENS
    assert chunks[-1]["usage"]["completion_tokens"] == count_tokens(streamed_text(chunks))
    assert [c for c in chunks[:-1] if "usage" in c] == []


def test_a_tool_call_round_trip(upstream: Upstream, simulator: RunningServer) -> None:
    request = ask("weather in Oslo?", tools=[WEATHER_TOOL])
    first = chat(upstream, request)
    message = first["choices"][0]["message"]
    assert first["choices"][0]["finish_reason"] == "tool_calls"
    (call,) = message["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert set(json.loads(call["function"]["arguments"])) == {"city"}

    request["messages"] += [message, {"role": "tool", "tool_call_id": call["id"], "content": "9C"}]
    second = chat(upstream, request)

    assert second["choices"][0]["finish_reason"] == "stop"
    sent = received(simulator)[-1]["body"]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call["id"]
    assert sent[1]["tool_plan"] == message["content"]
    assert sent[2] == {"role": "tool", "tool_call_id": call["id"], "content": "9C"}


def test_a_streamed_tool_call_has_id_and_name_first_then_argument_pieces(
    upstream: Upstream,
) -> None:
    plain = chat(upstream, ask("weather in Oslo?", tools=[WEATHER_TOOL]))
    chunks = stream(upstream, ask("weather in Oslo?", tools=[WEATHER_TOOL]))

    deltas = [
        call
        for c in chunks
        if c["choices"]
        for call in c["choices"][0]["delta"].get("tool_calls", [])
    ]
    expected = plain["choices"][0]["message"]["tool_calls"][0]
    assert deltas[0]["id"] == expected["id"]
    assert deltas[0]["function"]["name"] == "get_weather"
    assert {d["index"] for d in deltas} == {0}
    arguments = "".join(d["function"]["arguments"] for d in deltas)
    assert arguments == expected["function"]["arguments"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_max_tokens_is_a_length_finish(upstream: Upstream) -> None:
    completion = chat(upstream, ask("a question that runs long", max_completion_tokens=2))

    assert completion["choices"][0]["finish_reason"] == "length"
    assert completion["usage"]["completion_tokens"] == 2


def test_a_stop_sequence_is_a_stop_finish(upstream: Upstream) -> None:
    completion = chat(upstream, ask("alpha beta gamma", stop="beta"))

    assert completion["choices"][0]["finish_reason"] == "stop"
    assert completion["choices"][0]["message"]["content"] == "Echo: alpha"


def test_embeddings_come_back_as_floats_with_usage(upstream: Upstream) -> None:
    response = embed(upstream, {"model": "embed-v4.0", "input": ["one two", "three"]})

    assert [d["index"] for d in response["data"]] == [0, 1]
    assert len(response["data"][0]["embedding"]) == 1024
    assert response["usage"] == {"prompt_tokens": 3, "total_tokens": 3}


def test_base64_embeddings_decode_to_the_float_ones(upstream: Upstream) -> None:
    floats = embed(upstream, {"model": "e", "input": "same"})["data"][0]["embedding"]
    packed = embed(upstream, {"model": "e", "input": "same", "encoding_format": "base64"})

    raw = base64.b64decode(packed["data"][0]["embedding"])
    assert struct.unpack(f"<{len(floats)}f", raw) == pytest.approx(floats, abs=1e-6)


def test_embedding_input_type_defaults_and_can_be_overridden(
    upstream: Upstream, simulator: RunningServer
) -> None:
    embed(upstream, {"model": "e", "input": "x"})
    embed(upstream, {"model": "e", "input": "x", "input_type": "search_query"})

    bodies = [r["body"] for r in received(simulator)]
    assert [b["input_type"] for b in bodies] == ["search_document", "search_query"]
    assert bodies[0]["embedding_types"] == ["float"]


def test_more_than_96_inputs_are_sent_in_batches(
    upstream: Upstream, simulator: RunningServer
) -> None:
    texts = [f"text {i}" for i in range(100)]

    response = embed(upstream, {"model": "e", "input": texts})

    assert len(response["data"]) == 100
    assert sorted(len(r["body"]["texts"]) for r in received(simulator)) == [4, 96]
    again = embed(upstream, {"model": "e", "input": texts[99]})
    assert again["data"][0]["embedding"] == response["data"][99]["embedding"]


def test_token_array_inputs_cannot_be_embedded(upstream: Upstream) -> None:
    with pytest.raises(TranslationError) as caught:
        embed(upstream, {"model": "e", "input": [[1, 2, 3]]})
    assert caught.value.param == "input"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"tools": [WEATHER_TOOL], "parallel_tool_calls": False}, "parallel_tool_calls"),
    ],
)
def test_features_cohere_cannot_express_are_refused_naming_the_param(
    upstream: Upstream, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(TranslationError) as caught:
        chat(upstream, ask("hi", **extra))
    assert caught.value.param == param


def test_a_429_is_rate_limited_with_retry_after(upstream: Upstream, state: SimulatorState) -> None:
    state.set_faults(MODEL, Faults(burst_429=1, retry_after_s=2.5))

    with pytest.raises(UpstreamError) as caught:
        chat(upstream, ask("hi"))
    assert caught.value.kind is FailureKind.RATE_LIMITED
    assert caught.value.retry_after == 2.5


def test_a_rejected_key_is_an_authentication_failure(upstream: Upstream) -> None:
    bad = Upstream("cohere", "cohere", upstream.base_url, MODEL, api_key="bad-key")

    with pytest.raises(UpstreamError) as caught:
        chat(bad, ask("hi"))
    assert caught.value.kind is FailureKind.AUTHENTICATION
    assert caught.value.message == "invalid api token"


def test_an_unknown_model_is_not_found(upstream: Upstream) -> None:
    unknown = Upstream("cohere", "cohere", upstream.base_url, "unknown-model", api_key="k")

    with pytest.raises(UpstreamError) as caught:
        stream(unknown, ask("hi"))
    assert caught.value.kind is FailureKind.NOT_FOUND


def test_a_prompt_over_the_context_window_is_a_context_length_failure(
    upstream: Upstream, state: SimulatorState
) -> None:
    state.set_faults(MODEL, Faults(context_window=2))

    with pytest.raises(UpstreamError) as caught:
        chat(upstream, ask("three words long"))
    assert caught.value.kind is FailureKind.CONTEXT_LENGTH


def test_an_upstream_400_is_an_invalid_request(upstream: Upstream) -> None:
    with pytest.raises(UpstreamError) as caught:
        chat(upstream, ask("hi", tool_choice="required"))
    assert caught.value.kind is FailureKind.INVALID_REQUEST
    assert caught.value.message.startswith("invalid request:")


def test_a_stream_cut_short_is_a_connection_failure(
    upstream: Upstream, state: SimulatorState
) -> None:
    state.set_faults(MODEL, Faults(cut_after_chunks=2))

    with pytest.raises(UpstreamError) as caught:
        stream(upstream, ask("cut this stream short"))
    assert caught.value.kind is FailureKind.CONNECTION
