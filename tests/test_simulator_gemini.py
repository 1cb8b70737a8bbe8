"""The Gemini simulator, driven by Google's own SDK (`google-genai`) and by raw HTTP where the
wire bytes themselves matter."""

from __future__ import annotations

import base64

import httpx
import orjson
import pytest
from google import genai
from google.genai import errors, types

from capstan.testing.simulator.gemini_replies import IMAGE_TOKENS, SAFETY_TRIGGER
from tests.servers import RunningServer
from tests.simulator_fixtures import set_faults

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image bytes").decode()
WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Current weather in a city",
    parameters=types.Schema(
        type=types.Type.OBJECT,
        properties={
            "city": types.Schema(type=types.Type.STRING),
            "unit": types.Schema(type=types.Type.STRING, enum=["celsius", "fahrenheit"]),
        },
        required=["city", "unit"],
    ),
)


pytestmark = pytest.mark.usefixtures("simulator_state")


@pytest.fixture(scope="module")
def client(simulator: RunningServer) -> genai.Client:
    # The SDK defaults to api_version "v1"; the simulator serves Google's v1beta surface.
    options = types.HttpOptions(base_url=simulator.url, api_version="v1beta")
    return genai.Client(api_key="test-key", http_options=options)


def test_generate_content_echoes_the_prompt_with_consistent_usage(client: genai.Client) -> None:
    response = client.models.generate_content(model="gemini-2.0-flash", contents="hello there")
    assert response.text is not None
    assert response.text.startswith("Echo: hello there.")
    usage = response.usage_metadata
    assert usage is not None
    assert usage.prompt_token_count == 2
    assert usage.candidates_token_count == len(response.text.split())
    assert usage.total_token_count == 2 + len(response.text.split())
    assert response.candidates is not None
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.model_version == "gemini-2.0-flash"
    assert response.response_id


def test_system_instruction_counts_as_prompt(client: genai.Client) -> None:
    config = types.GenerateContentConfig(system_instruction="answer in three words")
    response = client.models.generate_content(
        model="gemini-2.0-flash", contents="hi", config=config
    )
    assert response.usage_metadata is not None
    assert response.usage_metadata.prompt_token_count == 5


def test_default_v1_api_version_is_served(simulator: RunningServer) -> None:
    client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=simulator.url))
    response = client.models.generate_content(model="gemini-2.0-flash", contents="on v1")
    assert response.text is not None
    assert response.text.startswith("Echo: on v1.")


def test_stream_joins_to_the_unstreamed_text(client: genai.Client) -> None:
    config = types.GenerateContentConfig(seed=7)
    whole = client.models.generate_content(model="gemini-2.0-flash", contents="tell", config=config)
    chunks = list(
        client.models.generate_content_stream(
            model="gemini-2.0-flash", contents="tell", config=config
        )
    )
    assert "".join(c.text or "" for c in chunks) == whole.text
    last = chunks[-1]
    assert last.candidates is not None
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata == whole.usage_metadata
    assert all(c.candidates and c.candidates[0].finish_reason is None for c in chunks[:-1])


def test_max_output_tokens_stops_with_max_tokens(client: genai.Client) -> None:
    config = types.GenerateContentConfig(max_output_tokens=3)
    response = client.models.generate_content(model="gemini-2.0-flash", contents="x", config=config)
    assert response.candidates is not None
    assert response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert response.usage_metadata is not None
    assert response.usage_metadata.candidates_token_count == 3


def test_offered_tools_get_a_function_call(client: genai.Client) -> None:
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[WEATHER])])
    response = client.models.generate_content(
        model="gemini-2.0-flash", contents="weather in Paris?", config=config
    )
    assert response.function_calls is not None
    call = response.function_calls[0]
    assert call.name == "get_weather"
    assert call.args is not None
    assert call.args["unit"] == "celsius"
    assert isinstance(call.args["city"], str)


def test_function_response_turn_gets_text(client: genai.Client) -> None:
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[WEATHER])])
    call = types.Part.from_function_call(name="get_weather", args={"city": "Paris", "unit": "c"})
    result = types.Part.from_function_response(name="get_weather", response={"temp": 21})
    contents = [
        types.Content(role="user", parts=[types.Part.from_text(text="weather?")]),
        types.Content(role="model", parts=[call]),
        types.Content(role="user", parts=[result]),
    ]
    response = client.models.generate_content(
        model="gemini-2.0-flash", contents=contents, config=config
    )
    assert response.function_calls is None
    assert response.text is not None
    assert "get_weather" in response.text


def test_mode_none_answers_with_text(client: genai.Client) -> None:
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(
                mode=types.FunctionCallingConfigMode.NONE
            )
        ),
    )
    response = client.models.generate_content(
        model="gemini-2.0-flash", contents="hi", config=config
    )
    assert response.function_calls is None
    assert response.text


def test_thinking_model_reports_thoughts(client: genai.Client) -> None:
    config = types.GenerateContentConfig(
        thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=20)
    )
    response = client.models.generate_content(
        model="gemini-2.5-flash", contents="why", config=config
    )
    usage = response.usage_metadata
    assert usage is not None
    assert usage.thoughts_token_count is not None
    assert 0 < usage.thoughts_token_count <= 20
    assert usage.total_token_count == (
        (usage.prompt_token_count or 0)
        + (usage.candidates_token_count or 0)
        + usage.thoughts_token_count
    )
    assert response.candidates is not None
    content = response.candidates[0].content
    assert content is not None
    assert content.parts is not None
    assert content.parts[0].thought is True


def test_inline_image_costs_fixed_tokens(client: genai.Client) -> None:
    image = types.Part.from_bytes(data=base64.b64decode(PNG), mime_type="image/png")
    response = client.models.generate_content(
        model="gemini-2.0-flash", contents=[image, "describe this"]
    )
    assert response.usage_metadata is not None
    assert response.usage_metadata.prompt_token_count == IMAGE_TOKENS + 2


def test_json_mode_follows_the_response_schema(client: genai.Client) -> None:
    config = types.GenerateContentConfig(
        response_mime_type="application/json",
        response_schema=types.Schema(
            type=types.Type.OBJECT,
            properties={"n": types.Schema(type=types.Type.INTEGER)},
            required=["n"],
        ),
    )
    response = client.models.generate_content(
        model="gemini-2.0-flash", contents="n?", config=config
    )
    assert isinstance(orjson.loads(response.text or ""), dict)
    assert isinstance(orjson.loads(response.text or "")["n"], int)


def test_candidate_count_gives_several_candidates(client: genai.Client) -> None:
    config = types.GenerateContentConfig(candidate_count=2)
    response = client.models.generate_content(
        model="gemini-2.0-flash", contents="hi", config=config
    )
    assert response.candidates is not None
    assert [c.index for c in response.candidates] == [0, 1]


def test_safety_trigger_stops_with_safety(client: genai.Client) -> None:
    response = client.models.generate_content(
        model="gemini-2.0-flash", contents=f"please {SAFETY_TRIGGER}"
    )
    assert response.candidates is not None
    assert response.candidates[0].finish_reason == types.FinishReason.SAFETY
    assert response.text is None


def test_repeated_long_prefix_is_reported_cached(client: genai.Client) -> None:
    preamble = " ".join(f"rule{i}" for i in range(40))
    config = types.GenerateContentConfig(system_instruction=preamble)
    model = "gemini-2.5-flash-cache-sdk"
    first = client.models.generate_content(model=model, contents="first", config=config)
    second = client.models.generate_content(model=model, contents="second", config=config)
    assert first.usage_metadata is not None
    assert first.usage_metadata.cached_content_token_count is None
    assert second.usage_metadata is not None
    assert second.usage_metadata.cached_content_token_count == 40


def test_count_tokens(client: genai.Client) -> None:
    result = client.models.count_tokens(model="gemini-2.0-flash", contents="one two three")
    assert result.total_tokens == 3


def test_embed_content_is_deterministic_and_sized(client: genai.Client) -> None:
    config = types.EmbedContentConfig(output_dimensionality=16)
    result = client.models.embed_content(
        model="gemini-embedding-001", contents=["alpha", "beta", "alpha"], config=config
    )
    assert result.embeddings is not None
    vectors = [e.values for e in result.embeddings]
    assert [len(v or []) for v in vectors] == [16, 16, 16]
    assert vectors[0] == vectors[2]
    assert vectors[0] != vectors[1]


def test_list_models(client: genai.Client) -> None:
    names = [m.name for m in client.models.list()]
    assert "models/gemini-2.5-flash" in names


def test_rejected_key_is_googles_400(simulator: RunningServer) -> None:
    options = types.HttpOptions(base_url=simulator.url, api_version="v1beta")
    client = genai.Client(api_key="bad-key", http_options=options)
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model="gemini-2.0-flash", contents="x")
    assert caught.value.code == 400
    assert caught.value.status == "INVALID_ARGUMENT"
    assert caught.value.message == "API key not valid. Please pass a valid API key."


def test_unknown_model_is_404(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model="unknown-model", contents="x")
    assert caught.value.code == 404
    assert caught.value.status == "NOT_FOUND"


def test_rate_limit_states_the_delay_in_the_body(
    simulator: RunningServer, client: genai.Client
) -> None:
    set_faults(simulator, "gemini-sdk-429", burst_429=1, retry_after_s=7)
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model="gemini-sdk-429", contents="x")
    assert caught.value.code == 429
    assert caught.value.status == "RESOURCE_EXHAUSTED"
    assert caught.value.details["error"]["details"][0]["retryDelay"] == "7s"


@pytest.mark.parametrize(("status", "name"), [(500, "INTERNAL"), (503, "UNAVAILABLE")])
def test_server_faults_raise_server_error(
    simulator: RunningServer, client: genai.Client, status: int, name: str
) -> None:
    set_faults(simulator, "gemini-sdk-5xx", error_rate=1.0, error_status=status)
    with pytest.raises(errors.ServerError) as caught:
        client.models.generate_content(model="gemini-sdk-5xx", contents="x")
    assert caught.value.code == status
    assert caught.value.status == name


def _post(simulator: RunningServer, path: str, body: object, **params: str) -> httpx.Response:
    return httpx.post(
        f"{simulator.url}/v1beta/models/{path}",
        json=body,
        params=params,
        headers={"x-goog-api-key": "k"},
    )


def test_sse_events_are_crlf_framed(simulator: RunningServer) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "frames"}]}]}
    response = _post(simulator, "gemini-2.0-flash:streamGenerateContent", body, alt="sse")
    assert response.headers["content-type"].startswith("text/event-stream")
    events = response.content.split(b"\r\n\r\n")
    assert events[-1] == b""
    assert all(e.startswith(b"data: {") for e in events[:-1])
    assert orjson.loads(events[-2][6:])["candidates"][0]["finishReason"] == "STOP"


def test_stream_without_sse_is_a_json_array(simulator: RunningServer) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "array"}]}]}
    response = _post(simulator, "gemini-2.0-flash:streamGenerateContent", body)
    chunks = orjson.loads(response.content)
    assert isinstance(chunks, list)
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"


def test_key_in_query_parameter_is_accepted(simulator: RunningServer) -> None:
    body = {"contents": [{"parts": [{"text": "query key"}]}]}
    response = httpx.post(
        f"{simulator.url}/v1beta/models/gemini-2.0-flash:generateContent",
        json=body,
        params={"key": "k"},
    )
    assert response.status_code == 200


def test_missing_key_is_403(simulator: RunningServer) -> None:
    body = {"contents": [{"parts": [{"text": "x"}]}]}
    response = httpx.post(
        f"{simulator.url}/v1beta/models/gemini-2.0-flash:generateContent", json=body
    )
    assert response.status_code == 403
    assert response.json()["error"]["status"] == "PERMISSION_DENIED"


def test_unknown_field_is_refused(simulator: RunningServer) -> None:
    body = {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"max_tokens": 5}}
    response = _post(simulator, "gemini-2.0-flash:generateContent", body)
    assert response.status_code == 400
    assert 'Unknown name "maxTokens"' in response.json()["error"]["message"]


def test_snake_case_fields_are_accepted(simulator: RunningServer) -> None:
    body = {"contents": [{"parts": [{"text": "x"}]}], "generation_config": {"max_output_tokens": 1}}
    response = _post(simulator, "gemini-2.0-flash:generateContent", body)
    assert response.json()["candidates"][0]["finishReason"] == "MAX_TOKENS"


def test_function_responses_must_match_the_calls(simulator: RunningServer) -> None:
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "x"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "f", "response": {}}},
                    {"functionResponse": {"name": "f", "response": {}}},
                ],
            },
        ]
    }
    response = _post(simulator, "gemini-2.0-flash:generateContent", body)
    assert response.status_code == 400
    assert "number of function response parts" in response.json()["error"]["message"]


def test_empty_contents_is_invalid_argument(simulator: RunningServer) -> None:
    response = _post(simulator, "gemini-2.0-flash:generateContent", {"contents": []})
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_gemini_3_refuses_unsigned_function_calls(simulator: RunningServer) -> None:
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "x"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]},
        ]
    }
    response = _post(simulator, "gemini-3-pro-preview:generateContent", body)
    assert response.status_code == 400
    assert "thought_signature" in response.json()["error"]["message"]


def test_get_model(client: genai.Client) -> None:
    model = client.models.get(model="gemini-2.5-flash")
    assert model.name == "models/gemini-2.5-flash"
    assert model.output_token_limit == 65536


def test_embed_content_single(simulator: RunningServer) -> None:
    body = {"content": {"parts": [{"text": "one"}]}, "outputDimensionality": 3}
    response = _post(simulator, "text-embedding-004:embedContent", body)
    assert len(response.json()["embedding"]["values"]) == 3


def test_count_tokens_of_a_generate_request(simulator: RunningServer) -> None:
    inner = {
        "model": "models/gemini-2.0-flash",
        "contents": [{"parts": [{"text": "a b"}]}],
        "systemInstruction": {"parts": [{"text": "c d e"}]},
    }
    response = _post(simulator, "gemini-2.0-flash:countTokens", {"generateContentRequest": inner})
    assert response.json()["totalTokens"] == 5
