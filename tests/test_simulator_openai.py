"""The upstream simulator speaks OpenAI's wire format: the official SDK works against it, and
every response and stream chunk validates against OpenAI's published OpenAPI document."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import jsonschema
import openai
import pytest

from capstan.testing.simulator import build_simulator
from tests.openai_spec import (
    AsyncWireRecorder,
    WireRecorder,
    validate_openai,
    validate_openai_exchange,
)
from tests.servers import RunningServer, start_asgi

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
}
TIME: Any = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string"}},
            "required": ["zone"],
        },
    },
}
CHUNK = "CreateChatCompletionStreamResponse"
COMPLETION = "CreateChatCompletionResponse"


@pytest.fixture(scope="module")
def simulator() -> Iterator[RunningServer]:
    server = start_asgi(build_simulator())
    yield server
    server.stop()


@pytest.fixture
def recorder() -> WireRecorder:
    return WireRecorder()


@pytest.fixture
def client(simulator: RunningServer, recorder: WireRecorder) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        api_key="sk-test",
        base_url=simulator.url + "/v1",
        max_retries=0,
        http_client=httpx2.Client(transport=recorder),
    ) as sdk:
        yield sdk


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def set_faults(simulator: RunningServer, model: str, **faults: Any) -> None:
    response = httpx.put(f"{simulator.url}/_sim/faults", json={"model": model, **faults})
    response.raise_for_status()


def test_chat_completion_echoes_the_prompt_and_matches_the_spec(
    client: openai.OpenAI, recorder: WireRecorder
) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o", messages=user("the quick brown fox")
    )
    validate_openai_exchange(recorder.last, COMPLETION)
    choice = completion.choices[0]
    assert choice.message.content is not None
    assert choice.message.content.startswith("Echo: the quick brown fox.")
    assert choice.finish_reason == "stop"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-4o"
    assert completion.object == "chat.completion"
    assert completion.system_fingerprint


def test_usage_counts_the_words_of_prompt_and_reply(client: openai.OpenAI) -> None:
    messages: list[Any] = [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "describe this picture"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
    ]
    completion = client.chat.completions.create(model="gpt-4o", messages=messages)
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == 2 + 3 + 85
    assert usage.completion_tokens == len((completion.choices[0].message.content or "").split())
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 0


def test_async_client_gets_the_same_reply_as_the_sync_client(
    simulator: RunningServer, client: openai.OpenAI
) -> None:
    recorder = AsyncWireRecorder()

    async def ask() -> str | None:
        async with openai.AsyncOpenAI(
            api_key="sk-test",
            base_url=simulator.url + "/v1",
            max_retries=0,
            http_client=httpx2.AsyncClient(transport=recorder),
        ) as sdk:
            completion = await sdk.chat.completions.create(
                model="gpt-4o", messages=user("async hello"), seed=7
            )
            return completion.choices[0].message.content

    content = asyncio.run(ask())
    validate_openai_exchange(recorder.last, COMPLETION)
    sync = client.chat.completions.create(model="gpt-4o", messages=user("async hello"), seed=7)
    assert content == sync.choices[0].message.content


def test_stream_sends_role_then_words_then_a_usage_chunk(
    client: openai.OpenAI, recorder: WireRecorder
) -> None:
    whole = client.chat.completions.create(model="gpt-4o", messages=user("stream me"), seed=3)
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o",
            messages=user("stream me"),
            seed=3,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    exchange = recorder.last
    assert exchange.content_type.startswith("text/event-stream")
    assert bytes(exchange.body).endswith(b"data: [DONE]\n\n")
    validate_openai_exchange(exchange, CHUNK)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(text.split())
    raw = exchange.events()
    assert all(chunk["usage"] is None for chunk in raw[:-1])


def test_stream_without_include_usage_has_no_usage_field(
    client: openai.OpenAI, recorder: WireRecorder
) -> None:
    list(client.chat.completions.create(model="gpt-4o", messages=user("hi"), stream=True))
    raw = recorder.last.events()
    assert all("usage" not in chunk for chunk in raw)
    assert raw[-1]["choices"][0]["finish_reason"] == "stop"


def test_named_tool_choice_calls_that_function_with_schema_arguments(
    client: openai.OpenAI, recorder: WireRecorder
) -> None:
    completion = client.chat.completions.create(
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


def test_parallel_tool_calls_call_the_first_two_tools(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o",
        messages=user("weather and time"),
        tools=[WEATHER, TIME],
    )
    calls = completion.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls if c.type == "function"] == ["get_weather", "get_time"]


def test_parallel_tool_calls_false_calls_one_tool(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o",
        messages=user("weather and time"),
        tools=[WEATHER, TIME],
        tool_choice="required",
        parallel_tool_calls=False,
    )
    assert len(completion.choices[0].message.tool_calls or []) == 1


def test_tool_choice_none_answers_in_text(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o",
        messages=user("no tools please"),
        tools=[WEATHER],
        tool_choice="none",
    )
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.tool_calls is None


def test_a_tool_result_gets_a_text_answer_echoing_it(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(
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
    second = client.chat.completions.create(
        model="gpt-4o",
        messages=messages,
        tools=[WEATHER],
    )
    assert second.choices[0].finish_reason == "stop"
    assert (second.choices[0].message.content or "").startswith("Echo: sunny and mild.")


def test_an_unanswered_tool_call_is_a_bad_request(client: openai.OpenAI) -> None:
    messages: list[Any] = [
        *user("weather"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        *user("well?"),
    ]
    with pytest.raises(openai.BadRequestError, match="call_1"):
        client.chat.completions.create(model="gpt-4o", messages=messages)


def test_a_tool_result_for_an_unknown_call_is_a_bad_request(client: openai.OpenAI) -> None:
    messages: list[Any] = [
        *user("weather"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_2", "content": "sunny"},
    ]
    with pytest.raises(openai.BadRequestError, match="call_2"):
        client.chat.completions.create(model="gpt-4o", messages=messages)


def test_a_temperature_out_of_range_is_a_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="gpt-4o", messages=user("hot"), temperature=3)
    assert raised.value.param == "temperature"


def test_streamed_tool_calls_arrive_in_pieces_and_accumulate(
    client: openai.OpenAI, recorder: WireRecorder
) -> None:
    chunks = list(
        client.chat.completions.create(
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


def test_json_schema_response_format_returns_json_satisfying_the_schema(
    client: openai.OpenAI,
) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    completion = client.chat.completions.create(
        model="gpt-4o",
        messages=user("a person"),
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": schema, "strict": True},
        },
    )
    jsonschema.validate(json.loads(completion.choices[0].message.content or ""), schema)


def test_json_object_response_format_returns_a_json_object(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o",
        messages=user("answer in json"),
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(completion.choices[0].message.content or ""), dict)


def test_n_returns_that_many_distinct_choices(
    client: openai.OpenAI, recorder: WireRecorder
) -> None:
    completion = client.chat.completions.create(model="gpt-4o", messages=user("pick"), n=3)
    validate_openai_exchange(recorder.last, COMPLETION)
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert len({c.message.content for c in completion.choices}) == 3


def test_a_stop_sequence_truncates_the_reply(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o", messages=user("alpha beta gamma delta"), stop=["gamma", "zzz"]
    )
    choice = completion.choices[0]
    assert choice.message.content == "Echo: alpha beta"
    assert choice.finish_reason == "stop"


def test_max_tokens_truncates_with_finish_reason_length(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o", messages=user("tell me a long story"), max_completion_tokens=4
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == "Echo: tell me a"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 4


def test_the_seed_changes_the_reply_deterministically(client: openai.OpenAI) -> None:
    def reply(seed: int) -> str | None:
        completion = client.chat.completions.create(
            model="gpt-4o", messages=user("seeded"), seed=seed
        )
        return completion.choices[0].message.content

    assert reply(1) == reply(1)
    assert reply(1) != reply(2)


def test_logprobs_come_per_token_with_top_alternatives(
    client: openai.OpenAI, recorder: WireRecorder
) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o", messages=user("probabilities"), logprobs=True, top_logprobs=3
    )
    validate_openai_exchange(recorder.last, COMPLETION)
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None
    entries = logprobs.content or []
    assert "".join(e.token for e in entries) == completion.choices[0].message.content
    assert all(len(e.top_logprobs) == 3 and e.logprob <= 0 for e in entries)


def test_a_repeated_prefix_is_reported_as_cached_tokens(client: openai.OpenAI) -> None:
    system: Any = {"role": "system", "content": "you are a cache test with seven words"}

    def cached(question: str) -> int:
        completion = client.chat.completions.create(
            model="gpt-4o-mini", messages=[system, *user(question)]
        )
        assert completion.usage is not None
        details = completion.usage.prompt_tokens_details
        assert details is not None
        return details.cached_tokens or 0

    assert cached("first question") == 0
    assert cached("second question") == 8


def test_extra_fields_are_accepted_and_recorded(
    simulator: RunningServer, client: openai.OpenAI
) -> None:
    client.chat.completions.create(
        model="gpt-4o",
        messages=user("extras"),
        user="alice",
        metadata={"team": "search"},
        extra_body={"vendor_flag": True},
    )
    received = httpx.get(f"{simulator.url}/_sim/requests").json()
    body = received[-1]["body"]
    assert body["user"] == "alice"
    assert body["metadata"] == {"team": "search"}
    assert body["vendor_flag"] is True


def test_embeddings_default_to_base64_unit_vectors(
    client: openai.OpenAI, recorder: WireRecorder
) -> None:
    result = client.embeddings.create(model="text-embedding-3-small", input=["one", "two words"])
    raw = recorder.last.json()
    assert isinstance(raw["data"][0]["embedding"], str)
    assert [e.index for e in result.data] == [0, 1]
    vector = result.data[0].embedding
    assert len(vector) == 1536
    assert math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, rel_tol=1e-5)
    assert result.usage.prompt_tokens == 3


def test_float_embeddings_equal_the_base64_ones(
    client: openai.OpenAI, recorder: WireRecorder
) -> None:
    encoded = client.embeddings.create(model="text-embedding-3-small", input="same text")
    floats = client.embeddings.create(
        model="text-embedding-3-small", input="same text", encoding_format="float"
    )
    validate_openai_exchange(recorder.last, "CreateEmbeddingResponse")
    assert floats.data[0].embedding == encoded.data[0].embedding
    raw = base64.b64decode(recorder.exchanges[0].json()["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == floats.data[0].embedding


def test_embedding_size_follows_model_and_dimensions(client: openai.OpenAI) -> None:
    large = client.embeddings.create(model="text-embedding-3-large", input="x")
    short = client.embeddings.create(model="text-embedding-3-large", input="x", dimensions=256)
    assert len(large.data[0].embedding) == 3072
    assert len(short.data[0].embedding) == 256


def test_token_list_inputs_are_embedded(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3], [4]])
    assert len(result.data) == 2
    assert result.usage.prompt_tokens == 4


def test_models_can_be_listed_and_retrieved(client: openai.OpenAI, recorder: WireRecorder) -> None:
    ids = [model.id for model in client.models.list()]
    validate_openai_exchange(recorder.last, "ListModelsResponse")
    assert "gpt-4o" in ids
    model = client.models.retrieve("gpt-4o-mini")
    validate_openai_exchange(recorder.last, "Model")
    assert model.id == "gpt-4o-mini"


def test_retrieving_an_unlisted_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_a_bad_key_raises_authentication_error(
    simulator: RunningServer, recorder: WireRecorder
) -> None:
    sdk = openai.OpenAI(
        api_key="bad-key-123456",
        base_url=simulator.url + "/v1",
        max_retries=0,
        http_client=httpx2.Client(transport=recorder),
    )
    with pytest.raises(openai.AuthenticationError) as raised:
        sdk.chat.completions.create(model="gpt-4o", messages=user("hi"))
    validate_openai_exchange(recorder.last, "ErrorResponse")
    assert raised.value.code == "invalid_api_key"


def test_an_unknown_model_raises_not_found(client: openai.OpenAI, recorder: WireRecorder) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="unknown-model", messages=user("hi"))
    validate_openai_exchange(recorder.last, "ErrorResponse")
    assert raised.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("messages", "param", "code"),
    [
        ([], "messages", "empty_array"),
        ([{"role": "wizard", "content": "hi"}], "messages[0].role", "invalid_value"),
        ([{"role": "user", "content": 42}], "messages[0].content", "invalid_type"),
        ([{"content": "hi"}], "messages[0].role", "missing_required_parameter"),
    ],
    ids=["empty", "unknown-role", "wrong-type", "missing-role"],
)
def test_invalid_messages_raise_bad_request(
    client: openai.OpenAI,
    recorder: WireRecorder,
    messages: list[Any],
    param: str,
    code: str,
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="gpt-4o", messages=messages)
    validate_openai_exchange(recorder.last, "ErrorResponse")
    assert raised.value.param == param
    assert raised.value.code == code


def test_a_missing_model_is_a_bad_request(simulator: RunningServer) -> None:
    response = httpx.post(
        f"{simulator.url}/v1/chat/completions",
        headers={"Authorization": "Bearer sk-test"},
        json={"messages": user("hi")},
    )
    assert response.status_code == 400
    validate_openai("ErrorResponse", response.json())


def test_a_prompt_over_the_context_window_is_refused(
    simulator: RunningServer, client: openai.OpenAI
) -> None:
    set_faults(simulator, "gpt-small-window", context_window=5)
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model="gpt-small-window", messages=user("one two three four five six")
        )
    assert raised.value.code == "context_length_exceeded"


def test_a_rate_limit_fault_raises_rate_limit_error_with_headers(
    simulator: RunningServer, client: openai.OpenAI, recorder: WireRecorder
) -> None:
    set_faults(simulator, "gpt-limited", burst_429=1, retry_after_s=2)
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="gpt-limited", messages=user("hi"))
    validate_openai_exchange(recorder.last, "ErrorResponse")
    headers = raised.value.response.headers
    assert headers["retry-after"] == "2"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert raised.value.code == "rate_limit_exceeded"
    assert raised.value.type == "requests"


def test_a_server_error_fault_raises_internal_server_error(
    simulator: RunningServer, client: openai.OpenAI
) -> None:
    set_faults(simulator, "gpt-broken", error_rate=1.0, error_status=500)
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="gpt-broken", messages=user("hi"))
    assert raised.value.type == "server_error"


def test_successes_carry_request_id_and_rate_limit_headers(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=user("hi"))
    assert raw.headers["x-request-id"].startswith("req_")
    assert int(raw.headers["x-ratelimit-remaining-requests"]) > 0
    assert raw.headers["x-ratelimit-limit-requests"]


def test_azure_client_reaches_a_deployment(simulator: RunningServer) -> None:
    recorder = WireRecorder()
    azure = openai.AzureOpenAI(
        api_key="azure-key",
        azure_endpoint=simulator.url,
        api_version="2024-10-21",
        max_retries=0,
        http_client=httpx2.Client(transport=recorder),
    )
    completion = azure.chat.completions.create(model="my-gpt4o", messages=user("from azure"))
    validate_openai_exchange(recorder.last, COMPLETION)
    assert completion.model == "my-gpt4o"
    assert (completion.choices[0].message.content or "").startswith("Echo: from azure.")
    embedding = azure.embeddings.create(model="my-embedder", input="azure text")
    assert len(embedding.data[0].embedding) == 1536
    received = httpx.get(f"{simulator.url}/_sim/requests").json()
    assert received[-1]["path"] == "/openai/deployments/my-embedder/embeddings"


def test_azure_requires_an_api_version(simulator: RunningServer) -> None:
    response = httpx.post(
        f"{simulator.url}/openai/deployments/my-gpt4o/chat/completions",
        headers={"api-key": "azure-key"},
        json={"messages": user("hi")},
    )
    assert response.status_code == 400
    assert "api-version" in response.json()["error"]["message"]


def test_azure_with_a_bad_key_raises_authentication_error(simulator: RunningServer) -> None:
    azure = openai.AzureOpenAI(
        api_key="bad-azure-key",
        azure_endpoint=simulator.url,
        api_version="2024-10-21",
        max_retries=0,
    )
    with pytest.raises(openai.AuthenticationError):
        azure.chat.completions.create(model="my-gpt4o", messages=user("hi"))
