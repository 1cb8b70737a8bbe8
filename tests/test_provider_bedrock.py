"""BedrockProvider over real HTTP: against the simulator, and against a capturing server that
re-derives the SigV4 signature from what arrived on the wire."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import pytest
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from capstan.gateway.providers.base import FailureKind, TranslationError, Upstream, UpstreamError
from capstan.gateway.providers.bedrock import BedrockProvider
from capstan.gateway.upstream_client import UpstreamClient
from tests import simulator_fixtures
from tests.provider_session import with_session
from tests.servers import RunningServer
from tests.simulator_fixtures import last_body as last_upstream_body

T = TypeVar("T")
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
OPTIONS = {"region": "eu-west-1", "aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "s3"}
HELLO = [{"role": "user", "content": "hello from the provider test"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
PIXEL = base64.b64encode(b"\x89PNG\r\n\x1a\n-not-really-a-png").decode()
provider = BedrockProvider()


pytestmark = pytest.mark.usefixtures("simulator_state")


@pytest.fixture
def upstream(simulator: RunningServer) -> Upstream:
    return Upstream("aws", "bedrock", simulator.url, MODEL, options=OPTIONS)


def chat(upstream: Upstream, **request: Any) -> dict[str, Any]:
    body = {"model": upstream.model, "messages": HELLO, **request}
    return with_session(lambda http: provider.chat(http, upstream, body))


def stream(upstream: Upstream, **request: Any) -> list[dict[str, Any]]:
    body = {"model": upstream.model, "messages": HELLO, **request}

    async def collect(http: UpstreamClient) -> list[dict[str, Any]]:
        return [chunk async for chunk in provider.stream_chat(http, upstream, body)]

    return with_session(collect)


def set_faults(simulator: RunningServer, **faults: Any) -> None:
    simulator_fixtures.set_faults(simulator, MODEL, **faults)


def upstream_error(action: Callable[[], object]) -> UpstreamError:
    with pytest.raises(UpstreamError) as excinfo:
        action()
    return excinfo.value


def test_chat_returns_an_openai_completion(upstream: Upstream) -> None:
    completion = chat(upstream)
    assert completion["object"] == "chat.completion"
    assert completion["model"] == MODEL
    [choice] = completion["choices"]
    assert choice["message"]["content"].startswith("Echo: hello from the provider test.")
    assert choice["finish_reason"] == "stop"
    assert completion["usage"]["prompt_tokens"] == 5


def test_streamed_chunks_join_to_the_same_text_and_end_with_usage(upstream: Upstream) -> None:
    whole = chat(upstream)
    chunks = stream(upstream)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == whole["usage"]


def test_tool_calls_round_trip(upstream: Upstream, simulator: RunningServer) -> None:
    first = chat(upstream, tools=[WEATHER], tool_choice="required")
    assert first["choices"][0]["finish_reason"] == "tool_calls"
    [tool_call] = first["choices"][0]["message"]["tool_calls"]
    assert tool_call["function"]["name"] == "get_weather"
    messages = [
        *HELLO,
        first["choices"][0]["message"],
        {"role": "tool", "tool_call_id": tool_call["id"], "content": "sunny in Lisbon"},
    ]
    second = chat(upstream, messages=messages, tools=[WEATHER])
    assert second["choices"][0]["finish_reason"] == "stop"
    assert "sunny in Lisbon" in second["choices"][0]["message"]["content"]
    turn = last_upstream_body(simulator)["messages"][-1]
    assert turn["content"][0]["toolResult"]["toolUseId"] == tool_call["id"]


def test_streamed_tool_calls_are_indexed_from_zero(upstream: Upstream) -> None:
    chunks = stream(upstream, tools=[WEATHER], tool_choice="auto")
    calls = [
        d for c in chunks if c["choices"] for d in c["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert {d["index"] for d in calls} == {0}
    assert calls[0]["function"]["name"] == "get_weather"
    arguments = "".join(d["function"]["arguments"] for d in calls)
    assert arguments.startswith('{"city":')
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_the_system_prompt_reaches_the_upstream(
    upstream: Upstream, simulator: RunningServer
) -> None:
    chat(upstream, messages=[{"role": "system", "content": "answer tersely"}, *HELLO])
    assert last_upstream_body(simulator)["system"] == [{"text": "answer tersely"}]


def test_an_image_reaches_the_upstream_as_bytes(
    upstream: Upstream, simulator: RunningServer
) -> None:
    url = f"data:image/png;base64,{PIXEL}"
    content = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    chat(upstream, messages=[{"role": "user", "content": content}])
    image = last_upstream_body(simulator)["messages"][0]["content"][1]["image"]
    assert image == {"format": "png", "source": {"bytes": PIXEL}}


def test_max_tokens_finishes_with_length(upstream: Upstream) -> None:
    completion = chat(upstream, max_tokens=2)
    assert completion["choices"][0]["finish_reason"] == "length"
    assert completion["usage"]["completion_tokens"] == 2


def test_a_stop_sequence_finishes_with_stop(upstream: Upstream) -> None:
    completion = chat(upstream, stop="provider")
    assert completion["choices"][0]["message"]["content"] == "Echo: hello from the"
    assert completion["choices"][0]["finish_reason"] == "stop"


def test_cached_prompt_tokens_are_reported(upstream: Upstream) -> None:
    system = [
        {"type": "text", "text": "a stable preamble of six", "cache_control": {"type": "ephemeral"}}
    ]
    messages = [{"role": "system", "content": system}, *HELLO]
    first = chat(upstream, messages=messages)["usage"]
    second = chat(upstream, messages=messages)["usage"]
    assert first["prompt_tokens_details"] == {"cached_tokens": 0, "cache_creation_tokens": 5}
    assert second["prompt_tokens_details"] == {"cached_tokens": 5, "cache_creation_tokens": 0}
    assert first["prompt_tokens"] == second["prompt_tokens"] == 10


@pytest.mark.parametrize(
    ("request_fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_schema", "json_schema": {}}}, "response_format"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
    ],
)
def test_untranslatable_features_name_their_param(
    upstream: Upstream, request_fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(TranslationError) as excinfo:
        chat(upstream, **request_fields)
    assert excinfo.value.param == param


def test_a_429_is_rate_limited(upstream: Upstream, simulator: RunningServer) -> None:
    set_faults(simulator, burst_429=1)
    error = upstream_error(lambda: chat(upstream))
    assert (error.kind, error.status) == (FailureKind.RATE_LIMITED, 429)


def test_an_unknown_model_is_not_found(upstream: Upstream) -> None:
    error = upstream_error(lambda: chat(replace(upstream, model="unknown-model")))
    assert error.kind is FailureKind.NOT_FOUND


def test_an_unknown_access_key_is_a_permission_failure(upstream: Upstream) -> None:
    bad = replace(upstream, options={**OPTIONS, "aws_access_key_id": "badkey"})
    error = upstream_error(lambda: chat(bad))
    assert error.kind is FailureKind.PERMISSION
    assert "security token" in error.message


def test_a_validation_error_is_an_invalid_request(upstream: Upstream) -> None:
    error = upstream_error(lambda: chat(upstream, temperature=1.5))
    assert error.kind is FailureKind.INVALID_REQUEST


def test_an_overlong_prompt_is_a_context_length_failure(
    upstream: Upstream, simulator: RunningServer
) -> None:
    set_faults(simulator, context_window=3)
    error = upstream_error(lambda: chat(upstream))
    assert error.kind is FailureKind.CONTEXT_LENGTH


def test_a_cut_stream_is_a_connection_failure(upstream: Upstream, simulator: RunningServer) -> None:
    set_faults(simulator, cut_after_chunks=2)
    error = upstream_error(lambda: stream(upstream))
    assert error.kind is FailureKind.CONNECTION


def test_a_mid_stream_exception_frame_is_an_upstream_error(upstream: Upstream) -> None:
    error = upstream_error(lambda: stream(replace(upstream, model="stream-error-model")))
    assert error.kind is FailureKind.SERVER
    assert "modelStreamErrorException" in error.message


def test_a_bedrock_api_key_is_sent_as_a_bearer_token(upstream: Upstream) -> None:
    keyed = replace(upstream, options={}, api_key="bedrock-api-key")
    assert chat(keyed)["choices"][0]["finish_reason"] == "stop"


def test_titan_embeddings(upstream: Upstream) -> None:
    titan = replace(upstream, model="amazon.titan-embed-text-v2:0")
    request = {"model": titan.model, "input": ["one two", "three"], "dimensions": 256}
    result = with_session(lambda http: provider.embed(http, titan, request))
    assert [len(d["embedding"]) for d in result["data"]] == [256, 256]
    assert result["usage"] == {"prompt_tokens": 3, "total_tokens": 3}


def test_embeddings_from_a_chat_model_are_refused(upstream: Upstream) -> None:
    with pytest.raises(TranslationError) as excinfo:
        with_session(lambda http: provider.embed(http, upstream, {"model": MODEL, "input": "x"}))
    assert excinfo.value.param == "model"


# --- the signature, checked against what arrived on the wire ---------------------------------

CANNED = {
    "output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}},
    "stopReason": "end_turn",
    "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
    "metrics": {"latencyMs": 1},
}


async def capture(upstream_for: Callable[[str], Upstream]) -> tuple[web.Request, bytes]:
    """Serve one canned Converse answer; return the request the provider sent, and its body."""
    received: list[tuple[web.Request, bytes]] = []

    async def handler(request: web.Request) -> web.Response:
        received.append((request, await request.read()))
        return web.json_response(CANNED)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        http = UpstreamClient()
        try:
            await provider.chat(http, upstream_for(f"http://{host}:{port}"), {"messages": HELLO})
        finally:
            await http.close()
    finally:
        await runner.cleanup()
    return received[0]


def expected_signature(request: web.Request, body: bytes, region: str, secret: str) -> str:
    """Recompute SigV4 from the received method, raw path, signed headers and body."""
    authorization = request.headers["Authorization"]
    signed = re.search(r"SignedHeaders=([^,]+)", authorization)
    access_key = re.search(r"Credential=([^/]+)/", authorization)
    assert signed is not None
    assert access_key is not None
    names = signed.group(1).split(";")
    headers = {name: request.headers[name] for name in names if name != "host"}
    rebuilt = AWSRequest(
        method=request.method,
        url=f"http://{request.host}{request.raw_path}",
        data=body,
        headers=headers,
    )
    rebuilt.context["timestamp"] = request.headers["X-Amz-Date"]
    signer = SigV4Auth(Credentials(access_key.group(1), secret), "bedrock", region)
    canonical = signer.canonical_request(rebuilt)
    return signer.signature(signer.string_to_sign(rebuilt, canonical), rebuilt)


def test_requests_carry_a_valid_sigv4_signature_for_the_region() -> None:
    arn = "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.anthropic.claude-3:0"
    options = {**OPTIONS, "aws_session_token": "session-token"}

    request, body = asyncio.run(
        capture(lambda url: Upstream("aws", "bedrock", url, arn, options=options))
    )
    authorization = request.headers["Authorization"]
    assert re.match(
        r"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{8}/eu-west-1/bedrock/aws4_request",
        authorization,
    )
    assert request.headers["X-Amz-Security-Token"] == "session-token"
    assert request.path.startswith(f"/model/{arn}/")
    signature = authorization.rsplit("Signature=", 1)[1]
    assert signature == expected_signature(request, body, "eu-west-1", "s3")
