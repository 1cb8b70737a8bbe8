"""The simulator's Cohere v2 wire format, checked with the official `cohere` SDK: if
`cohere.ClientV2` parses every answer into its typed models and raises its own error classes,
the simulator is faithful enough for adapter and load tests."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import cohere
import httpx
import pytest
from cohere import errors

from capstan.testing.simulator.cohere_wire import PROMPT_TEMPLATE_TOKENS
from capstan.testing.simulator.state import Faults, SimulatorState
from capstan.testing.simulator.text import count_tokens
from tests.servers import RunningServer

MODEL = "command-r-plus"
WEATHER_TOOL = cohere.ToolV2(
    function=cohere.ToolV2Function(
        name="get_weather",
        description="Current weather for a city",
        parameters={
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
            "required": ["city", "unit"],
        },
    )
)


pytestmark = pytest.mark.usefixtures("simulator_state")


@pytest.fixture
def client(simulator: RunningServer) -> cohere.ClientV2:
    return cohere.ClientV2(api_key="k", base_url=simulator.url, max_retries=0)


def user(text: str) -> list[cohere.ChatMessageV2]:
    return [cohere.UserChatMessageV2(content=text)]


def text_of(response: cohere.V2ChatResponse) -> str:
    """The answer's text: the first content block, which the simulator makes a text block."""
    (block,) = response.message.content or []
    assert isinstance(block, cohere.TextAssistantMessageResponseContentItem)
    return block.text


def deltas(events: list[Any], kind: str) -> list[Any]:
    """The `delta.message` of every event of one kind (the SDK types them per kind)."""
    return [event.delta.message for event in events if event.type == kind]


def test_chat_answers_with_an_echo_of_the_prompt(client: cohere.ClientV2) -> None:
    response = client.chat(model=MODEL, messages=user("hello there friend"))

    assert response.finish_reason == "COMPLETE"
    assert text_of(response).startswith("Echo: hello there friend.")


def test_chat_usage_counts_the_words_and_adds_the_template_to_tokens(
    client: cohere.ClientV2,
) -> None:
    response = client.chat(
        model=MODEL,
        messages=[cohere.SystemChatMessageV2(content="be brief"), *user("one two three")],
    )

    text = text_of(response)
    usage = response.usage
    assert usage is not None
    assert usage.billed_units is not None
    assert usage.tokens is not None
    assert usage.billed_units.input_tokens == 5
    assert usage.tokens.input_tokens == 5 + PROMPT_TEMPLATE_TOKENS
    assert usage.billed_units.output_tokens == usage.tokens.output_tokens == count_tokens(text)


def test_chat_stream_parses_into_the_sdk_event_types(client: cohere.ClientV2) -> None:
    events: list[Any] = list(client.chat_stream(model=MODEL, messages=user("stream this please")))

    kinds = [event.type for event in events]
    assert kinds[:2] == ["message-start", "content-start"]
    assert kinds[-2:] == ["content-end", "message-end"]
    assert set(kinds[2:-2]) == {"content-delta"}
    assert type(events[-1]).__name__ == "MessageEndV2ChatStreamResponse"


def test_chat_stream_text_and_usage_match_the_plain_answer(client: cohere.ClientV2) -> None:
    plain = client.chat(model=MODEL, messages=user("same answer twice"))
    events: list[Any] = list(client.chat_stream(model=MODEL, messages=user("same answer twice")))

    streamed = "".join(m.content.text for m in deltas(events, "content-delta"))
    assert streamed == text_of(plain)
    assert events[-1].delta.finish_reason == "COMPLETE"
    assert events[-1].delta.usage == plain.usage


def test_stream_is_framed_with_event_names_and_a_done_line(
    simulator: RunningServer, simulator_state: SimulatorState
) -> None:
    response = httpx.post(
        f"{simulator.url}/v2/chat",
        headers={"authorization": "Bearer k"},
        json={"model": MODEL, "messages": [{"role": "user", "content": "frame"}], "stream": True},
    )

    assert response.headers["content-type"].startswith("text/event-stream")
    frames = response.text.split("\n\n")
    assert frames[0].startswith('event: message-start\ndata: {"type":"message-start"')
    assert frames[-2:] == ["data: [DONE]", ""]


def test_tools_offered_give_a_tool_call_with_schema_arguments(client: cohere.ClientV2) -> None:
    response = client.chat(model=MODEL, messages=user("weather in Paris?"), tools=[WEATHER_TOOL])

    assert response.finish_reason == "TOOL_CALL"
    assert response.message.tool_plan
    (call,) = response.message.tool_calls or []
    assert call.id.startswith("get_weather_")
    assert call.function is not None
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments or "")
    assert set(arguments) == {"city", "unit"}
    assert arguments["unit"] == "C"


def test_a_tool_result_last_gets_a_text_answer(client: cohere.ClientV2) -> None:
    call = cohere.ToolCallV2(
        id="get_weather_1",
        function=cohere.ToolCallV2Function(name="get_weather", arguments='{"city": "Paris"}'),
    )
    messages = [
        *user("weather in Paris?"),
        cohere.AssistantChatMessageV2(tool_plan="I will look it up.", tool_calls=[call]),
        cohere.ToolChatMessageV2(tool_call_id="get_weather_1", content='{"temp": 21}'),
    ]

    response = client.chat(model=MODEL, messages=messages, tools=[WEATHER_TOOL])

    assert response.finish_reason == "COMPLETE"
    assert response.message.tool_calls is None


def test_tool_choice_none_gets_a_text_answer(client: cohere.ClientV2) -> None:
    response = client.chat(
        model=MODEL, messages=user("weather?"), tools=[WEATHER_TOOL], tool_choice="NONE"
    )

    assert response.finish_reason == "COMPLETE"


def test_tool_call_stream_sends_plan_start_argument_pieces_and_end(
    client: cohere.ClientV2,
) -> None:
    events: list[Any] = list(
        client.chat_stream(model=MODEL, messages=user("weather in Paris?"), tools=[WEATHER_TOOL])
    )

    kinds = [e.type for e in events]
    assert kinds[0] == "message-start"
    assert "tool-plan-delta" in kinds
    assert kinds.index("tool-call-start") < kinds.index("tool-call-delta")
    assert kinds[-2:] == ["tool-call-end", "message-end"]
    (start,) = deltas(events, "tool-call-start")
    assert start.tool_calls.function.name == "get_weather"
    pieces = [m.tool_calls.function.arguments for m in deltas(events, "tool-call-delta")]
    assert set(json.loads("".join(pieces))) == {"city", "unit"}
    assert events[-1].delta.finish_reason == "TOOL_CALL"


def test_max_tokens_cuts_the_answer(client: cohere.ClientV2) -> None:
    response = client.chat(model=MODEL, messages=user("a long question here"), max_tokens=3)

    assert response.finish_reason == "MAX_TOKENS"
    assert count_tokens(text_of(response)) == 3


def test_a_stop_sequence_ends_the_answer_before_it(client: cohere.ClientV2) -> None:
    response = client.chat(model=MODEL, messages=user("alpha beta gamma"), stop_sequences=["beta"])

    assert response.finish_reason == "STOP_SEQUENCE"
    assert text_of(response) == "Echo: alpha"


def test_a_repeated_conversation_prefix_is_reported_as_cached(client: cohere.ClientV2) -> None:
    history = [cohere.SystemChatMessageV2(content="a long shared system prompt"), *user("one")]
    client.chat(model=MODEL, messages=history)

    response = client.chat(model=MODEL, messages=[*history, *user("two")])

    assert response.usage is not None
    assert response.usage.cached_tokens == 6


def test_a_prompt_over_the_context_window_is_a_bad_request(
    client: cohere.ClientV2, simulator_state: SimulatorState
) -> None:
    simulator_state.set_faults(MODEL, Faults(context_window=3))

    with pytest.raises(errors.BadRequestError) as caught:
        client.chat(model=MODEL, messages=user("four words too many"))
    assert caught.value.body["message"].startswith("too many tokens:")


def test_json_response_format_answers_json_of_the_schema(client: cohere.ClientV2) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}

    response = client.chat(
        model=MODEL,
        messages=user("a name as JSON"),
        response_format=cohere.JsonObjectResponseFormatV2(json_schema=schema),
    )

    assert set(json.loads(text_of(response))) == {"name"}


def test_embed_returns_one_unit_float_vector_per_text(client: cohere.ClientV2) -> None:
    response = client.embed(
        model="embed-v4.0",
        texts=["first text", "second"],
        input_type="search_document",
        embedding_types=["float"],
    )

    vectors = response.embeddings.float_
    assert vectors is not None
    assert len(vectors) == 2
    assert len(vectors[0]) == 1024
    assert abs(sum(x * x for x in vectors[0]) - 1) < 1e-9
    assert response.texts == ["first text", "second"]
    assert response.meta is not None
    assert response.meta.billed_units is not None
    assert response.meta.billed_units.input_tokens == 3


def test_embed_base64_is_the_float32_bytes_of_the_floats(client: cohere.ClientV2) -> None:
    response = client.embed(
        model="embed-v4.0",
        texts=["pack me"],
        input_type="search_query",
        embedding_types=["float", "base64"],
    )

    (packed,) = response.embeddings.base64 or []
    (floats,) = response.embeddings.float_ or []
    raw = base64.b64decode(packed)
    assert struct.unpack(f"<{len(floats)}f", raw) == pytest.approx(floats, abs=1e-6)


def test_a_rejected_key_is_unauthorized(simulator: RunningServer) -> None:
    client = cohere.ClientV2(api_key="bad-key", base_url=simulator.url, max_retries=0)

    with pytest.raises(errors.UnauthorizedError) as caught:
        client.chat(model=MODEL, messages=user("hi"))
    assert caught.value.body == {"message": "invalid api token"}


def test_an_unknown_model_is_not_found(client: cohere.ClientV2) -> None:
    with pytest.raises(errors.NotFoundError):
        client.chat(model="unknown-model", messages=user("hi"))


def test_a_429_burst_is_too_many_requests_with_retry_after(
    client: cohere.ClientV2, simulator_state: SimulatorState
) -> None:
    simulator_state.set_faults(MODEL, Faults(burst_429=1, retry_after_s=3))

    with pytest.raises(errors.TooManyRequestsError) as caught:
        client.chat(model=MODEL, messages=user("hi"))
    assert caught.value.headers is not None
    assert caught.value.headers["retry-after"] == "3"
    assert client.chat(model=MODEL, messages=user("hi")).finish_reason == "COMPLETE"


def test_a_server_fault_is_an_internal_server_error(
    client: cohere.ClientV2, simulator_state: SimulatorState
) -> None:
    simulator_state.set_faults("*", Faults(error_rate=1.0, error_status=500))

    with pytest.raises(errors.InternalServerError):
        client.embed(model="embed-v4.0", texts=["x"], input_type="search_document")


def test_tool_choice_required_without_tools_is_a_bad_request(client: cohere.ClientV2) -> None:
    with pytest.raises(errors.BadRequestError) as caught:
        client.chat(model=MODEL, messages=user("hi"), tool_choice="REQUIRED")
    assert caught.value.body["message"].startswith("invalid request:")


def test_embed_with_an_unknown_input_type_is_a_bad_request(client: cohere.ClientV2) -> None:
    with pytest.raises(errors.BadRequestError):
        client.embed(model="embed-v4.0", texts=["x"], input_type="poetry")


def test_a_cut_stream_stops_without_message_end(
    client: cohere.ClientV2, simulator_state: SimulatorState
) -> None:
    simulator_state.set_faults(MODEL, Faults(cut_after_chunks=2))

    kinds: list[str] = []
    with pytest.raises(httpx.HTTPError):
        kinds.extend(e.type for e in client.chat_stream(model=MODEL, messages=user("cut me")))
    assert "message-end" not in kinds
