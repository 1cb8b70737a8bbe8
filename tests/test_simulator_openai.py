"""The upstream simulator speaks OpenAI's chat completions: the official SDK works against it, and
every response and stream chunk validates against OpenAI's published OpenAPI document. Tools are
in `test_simulator_openai_tools.py`, refusals in `test_simulator_openai_errors.py`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2
import jsonschema
import openai

from tests.openai_spec import (
    CHUNK,
    COMPLETION,
    AsyncWireRecorder,
    WireRecorder,
    validate_openai_exchange,
)
from tests.servers import RunningServer
from tests.simulator_fixtures import async_openai_sdk, last_body, user


def test_chat_completion_echoes_the_prompt_and_matches_the_spec(
    openai_client: openai.OpenAI, recorder: WireRecorder
) -> None:
    completion = openai_client.chat.completions.create(
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


def test_usage_counts_the_words_of_prompt_and_reply(openai_client: openai.OpenAI) -> None:
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
    completion = openai_client.chat.completions.create(model="gpt-4o", messages=messages)
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == 2 + 3 + 85
    assert usage.completion_tokens == len((completion.choices[0].message.content or "").split())
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 0


def test_async_client_gets_the_same_reply_as_the_sync_client(
    simulator: RunningServer, openai_client: openai.OpenAI
) -> None:
    recorder = AsyncWireRecorder()

    async def ask() -> str | None:
        async with async_openai_sdk(
            simulator, http_client=httpx2.AsyncClient(transport=recorder)
        ) as sdk:
            completion = await sdk.chat.completions.create(
                model="gpt-4o", messages=user("async hello"), seed=7
            )
            return completion.choices[0].message.content

    content = asyncio.run(ask())
    validate_openai_exchange(recorder.last, COMPLETION)
    sync = openai_client.chat.completions.create(
        model="gpt-4o", messages=user("async hello"), seed=7
    )
    assert content == sync.choices[0].message.content


def test_stream_sends_role_then_words_then_a_usage_chunk(
    openai_client: openai.OpenAI, recorder: WireRecorder
) -> None:
    whole = openai_client.chat.completions.create(
        model="gpt-4o", messages=user("stream me"), seed=3
    )
    chunks = list(
        openai_client.chat.completions.create(
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
    openai_client: openai.OpenAI, recorder: WireRecorder
) -> None:
    list(openai_client.chat.completions.create(model="gpt-4o", messages=user("hi"), stream=True))
    raw = recorder.last.events()
    assert all("usage" not in chunk for chunk in raw)
    assert raw[-1]["choices"][0]["finish_reason"] == "stop"


def test_json_schema_response_format_returns_json_satisfying_the_schema(
    openai_client: openai.OpenAI,
) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    completion = openai_client.chat.completions.create(
        model="gpt-4o",
        messages=user("a person"),
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": schema, "strict": True},
        },
    )
    jsonschema.validate(json.loads(completion.choices[0].message.content or ""), schema)


def test_json_object_response_format_returns_a_json_object(openai_client: openai.OpenAI) -> None:
    completion = openai_client.chat.completions.create(
        model="gpt-4o",
        messages=user("answer in json"),
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(completion.choices[0].message.content or ""), dict)


def test_n_returns_that_many_distinct_choices(
    openai_client: openai.OpenAI, recorder: WireRecorder
) -> None:
    completion = openai_client.chat.completions.create(model="gpt-4o", messages=user("pick"), n=3)
    validate_openai_exchange(recorder.last, COMPLETION)
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert len({c.message.content for c in completion.choices}) == 3


def test_a_stop_sequence_truncates_the_reply(openai_client: openai.OpenAI) -> None:
    completion = openai_client.chat.completions.create(
        model="gpt-4o", messages=user("alpha beta gamma delta"), stop=["gamma", "zzz"]
    )
    choice = completion.choices[0]
    assert choice.message.content == "Echo: alpha beta"
    assert choice.finish_reason == "stop"


def test_max_tokens_truncates_with_finish_reason_length(openai_client: openai.OpenAI) -> None:
    completion = openai_client.chat.completions.create(
        model="gpt-4o", messages=user("tell me a long story"), max_completion_tokens=4
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == "Echo: tell me a"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 4


def test_the_seed_changes_the_reply_deterministically(openai_client: openai.OpenAI) -> None:
    def reply(seed: int) -> str | None:
        completion = openai_client.chat.completions.create(
            model="gpt-4o", messages=user("seeded"), seed=seed
        )
        return completion.choices[0].message.content

    assert reply(1) == reply(1)
    assert reply(1) != reply(2)


def test_logprobs_come_per_token_with_top_alternatives(
    openai_client: openai.OpenAI, recorder: WireRecorder
) -> None:
    completion = openai_client.chat.completions.create(
        model="gpt-4o", messages=user("probabilities"), logprobs=True, top_logprobs=3
    )
    validate_openai_exchange(recorder.last, COMPLETION)
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None
    entries = logprobs.content or []
    assert "".join(e.token for e in entries) == completion.choices[0].message.content
    assert all(len(e.top_logprobs) == 3 and e.logprob <= 0 for e in entries)


def test_a_repeated_prefix_is_reported_as_cached_tokens(openai_client: openai.OpenAI) -> None:
    system: Any = {"role": "system", "content": "you are a cache test with seven words"}

    def cached(question: str) -> int:
        completion = openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=[system, *user(question)]
        )
        assert completion.usage is not None
        details = completion.usage.prompt_tokens_details
        assert details is not None
        return details.cached_tokens or 0

    assert cached("first question") == 0
    assert cached("second question") == 8


def test_extra_fields_are_accepted_and_recorded(
    simulator: RunningServer, openai_client: openai.OpenAI
) -> None:
    openai_client.chat.completions.create(
        model="gpt-4o",
        messages=user("extras"),
        user="alice",
        metadata={"team": "search"},
        extra_body={"vendor_flag": True},
    )
    body = last_body(simulator)
    assert body["user"] == "alice"
    assert body["metadata"] == {"team": "search"}
    assert body["vendor_flag"] is True


def test_models_can_be_listed_and_retrieved(
    openai_client: openai.OpenAI, recorder: WireRecorder
) -> None:
    ids = [model.id for model in openai_client.models.list()]
    validate_openai_exchange(recorder.last, "ListModelsResponse")
    assert "gpt-4o" in ids
    model = openai_client.models.retrieve("gpt-4o-mini")
    validate_openai_exchange(recorder.last, "Model")
    assert model.id == "gpt-4o-mini"


def test_successes_carry_request_id_and_rate_limit_headers(openai_client: openai.OpenAI) -> None:
    raw = openai_client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=user("hi")
    )
    assert raw.headers["x-request-id"].startswith("req_")
    assert int(raw.headers["x-ratelimit-remaining-requests"]) > 0
    assert raw.headers["x-ratelimit-limit-requests"]
