"""The simulator's Bedrock Runtime, driven by the official AWS SDK (boto3): if boto3 can call it,
decode its event streams and name its errors, the simulator speaks Bedrock's wire format."""

from __future__ import annotations

import json
from typing import Any

import boto3
import botocore.config
import httpx
import pytest
import urllib3.exceptions
from botocore.exceptions import ClientError, EventStreamError

from tests.servers import RunningServer
from tests.simulator_fixtures import received, set_faults

USER_HELLO = [{"role": "user", "content": [{"text": "hello from the bedrock test"}]}]
WEATHER_TOOL = {
    "toolSpec": {
        "name": "get_weather",
        "description": "The weather in a city",
        "inputSchema": {
            "json": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            }
        },
    }
}


pytestmark = pytest.mark.usefixtures("simulator_state")


def bedrock(simulator: RunningServer, access_key: str = "AKIDEXAMPLE") -> Any:
    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=simulator.url,
        aws_access_key_id=access_key,
        aws_secret_access_key="secret",
        config=botocore.config.Config(retries={"max_attempts": 0}),
    )


def stream_events(response: dict[str, Any]) -> list[dict[str, Any]]:
    return list(response["stream"])


def error_code(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    return str(excinfo.value.response["Error"]["Code"])


def test_converse_echoes_the_prompt_and_counts_tokens(simulator: RunningServer) -> None:
    response = bedrock(simulator).converse(modelId="anthropic.claude-3", messages=USER_HELLO)
    text = response["output"]["message"]["content"][0]["text"]
    assert text.startswith("Echo: hello from the bedrock test.")
    assert response["stopReason"] == "end_turn"
    usage = response["usage"]
    assert usage["inputTokens"] == 5
    assert usage["outputTokens"] == len(text.split())
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]


def test_converse_accepts_an_inference_profile_arn(simulator: RunningServer) -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3:0"
    bedrock(simulator).converse(modelId=arn, messages=USER_HELLO)
    [logged] = received(simulator)
    assert logged["path"] == f"/model/{arn}/converse"


def test_converse_stream_sends_the_converse_event_sequence(simulator: RunningServer) -> None:
    events = stream_events(
        bedrock(simulator).converse_stream(modelId="anthropic.claude-3", messages=USER_HELLO)
    )
    kinds = [next(iter(event)) for event in events]
    assert kinds[0] == "messageStart"
    assert kinds[-3:] == ["contentBlockStop", "messageStop", "metadata"]
    assert set(kinds[1:-3]) == {"contentBlockDelta"}


def test_converse_stream_text_matches_converse(simulator: RunningServer) -> None:
    client = bedrock(simulator)
    whole = client.converse(modelId="m", messages=USER_HELLO)
    events = stream_events(client.converse_stream(modelId="m", messages=USER_HELLO))
    streamed = "".join(
        e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e
    )
    assert streamed == whole["output"]["message"]["content"][0]["text"]
    assert events[-1]["metadata"]["usage"] == whole["usage"]


def test_offered_tools_are_called(simulator: RunningServer) -> None:
    response = bedrock(simulator).converse(
        modelId="m",
        messages=USER_HELLO,
        toolConfig={"tools": [WEATHER_TOOL], "toolChoice": {"any": {}}},
    )
    assert response["stopReason"] == "tool_use"
    [block] = response["output"]["message"]["content"]
    assert block["toolUse"]["name"] == "get_weather"
    assert set(block["toolUse"]["input"]) == {"city"}


def test_streamed_tool_call_starts_its_block_and_streams_json(simulator: RunningServer) -> None:
    events = stream_events(
        bedrock(simulator).converse_stream(
            modelId="m",
            messages=USER_HELLO,
            toolConfig={"tools": [WEATHER_TOOL], "toolChoice": {"tool": {"name": "get_weather"}}},
        )
    )
    [start] = [e["contentBlockStart"] for e in events if "contentBlockStart" in e]
    assert start["start"]["toolUse"]["name"] == "get_weather"
    pieces = [
        e["contentBlockDelta"]["delta"]["toolUse"]["input"]
        for e in events
        if "contentBlockDelta" in e
    ]
    assert set(json.loads("".join(pieces))) == {"city"}


def test_a_tool_result_turn_gets_a_text_answer(simulator: RunningServer) -> None:
    client = bedrock(simulator)
    config = {"tools": [WEATHER_TOOL]}
    first = client.converse(modelId="m", messages=USER_HELLO, toolConfig=config)
    use = next(b["toolUse"] for b in first["output"]["message"]["content"] if "toolUse" in b)
    result = {"toolUseId": use["toolUseId"], "content": [{"json": {"sky": "clear"}}]}
    messages = [
        *USER_HELLO,
        first["output"]["message"],
        {"role": "user", "content": [{"toolResult": result}]},
    ]
    second = client.converse(modelId="m", messages=messages, toolConfig=config)
    assert second["stopReason"] == "end_turn"
    assert "clear" in second["output"]["message"]["content"][0]["text"]


def test_a_tool_result_for_an_unknown_tool_use_is_refused(simulator: RunningServer) -> None:
    messages = [
        *USER_HELLO,
        {"role": "assistant", "content": [{"text": "ok"}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "nope", "content": []}}]},
    ]
    with pytest.raises(ClientError) as excinfo:
        bedrock(simulator).converse(
            modelId="m", messages=messages, toolConfig={"tools": [WEATHER_TOOL]}
        )
    assert error_code(excinfo) == "ValidationException"


def test_max_tokens_truncates_with_its_stop_reason(simulator: RunningServer) -> None:
    response = bedrock(simulator).converse(
        modelId="m", messages=USER_HELLO, inferenceConfig={"maxTokens": 3}
    )
    assert response["stopReason"] == "max_tokens"
    assert response["usage"]["outputTokens"] == 3


def test_a_stop_sequence_ends_the_text(simulator: RunningServer) -> None:
    response = bedrock(simulator).converse(
        modelId="m", messages=USER_HELLO, inferenceConfig={"stopSequences": ["bedrock"]}
    )
    assert response["stopReason"] == "stop_sequence"
    assert response["output"]["message"]["content"][0]["text"] == "Echo: hello from the"


def test_roles_that_do_not_alternate_are_a_validation_error(simulator: RunningServer) -> None:
    with pytest.raises(ClientError) as excinfo:
        bedrock(simulator).converse(modelId="m", messages=USER_HELLO * 2)
    assert error_code(excinfo) == "ValidationException"


def test_a_429_burst_is_a_throttling_exception(simulator: RunningServer) -> None:
    set_faults(simulator, "m", burst_429=1)
    with pytest.raises(ClientError) as excinfo:
        bedrock(simulator).converse(modelId="m", messages=USER_HELLO)
    assert error_code(excinfo) == "ThrottlingException"


def test_a_prompt_over_the_context_window_is_refused(simulator: RunningServer) -> None:
    set_faults(simulator, "m", context_window=3)
    with pytest.raises(ClientError) as excinfo:
        bedrock(simulator).converse(modelId="m", messages=USER_HELLO)
    assert error_code(excinfo) == "ValidationException"
    assert "too long" in str(excinfo.value)


def test_an_unknown_model_is_resource_not_found(simulator: RunningServer) -> None:
    with pytest.raises(ClientError) as excinfo:
        bedrock(simulator).converse(modelId="unknown-model", messages=USER_HELLO)
    assert error_code(excinfo) == "ResourceNotFoundException"


def test_a_403_fault_is_access_denied(simulator: RunningServer) -> None:
    set_faults(simulator, "m", error_rate=1.0, error_status=403)
    with pytest.raises(ClientError) as excinfo:
        bedrock(simulator).converse(modelId="m", messages=USER_HELLO)
    assert error_code(excinfo) == "AccessDeniedException"


def test_an_unknown_access_key_is_unrecognized(simulator: RunningServer) -> None:
    with pytest.raises(ClientError) as excinfo:
        bedrock(simulator, access_key="badkey").converse(modelId="m", messages=USER_HELLO)
    assert error_code(excinfo) == "UnrecognizedClientException"


def test_an_unsigned_request_is_missing_its_token(simulator: RunningServer) -> None:
    response = httpx.post(f"{simulator.url}/model/m/converse", json={"messages": USER_HELLO})
    assert response.status_code == 403
    assert response.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert response.json() == {"message": "Missing Authentication Token"}


def test_a_signature_for_another_service_is_refused(simulator: RunningServer) -> None:
    credential = "AKIDEXAMPLE/20250101/us-east-1/s3/aws4_request"
    header = f"AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders=host, Signature={'0' * 64}"
    response = httpx.post(
        f"{simulator.url}/model/m/converse",
        json={"messages": USER_HELLO},
        headers={"authorization": header, "x-amz-date": "20250101T000000Z"},
    )
    assert response.headers["x-amzn-ErrorType"] == "InvalidSignatureException"


def test_a_mid_stream_exception_reaches_boto3_by_name(simulator: RunningServer) -> None:
    response = bedrock(simulator).converse_stream(modelId="stream-error-m", messages=USER_HELLO)
    with pytest.raises(EventStreamError) as excinfo:
        stream_events(response)
    assert error_code(excinfo) == "modelStreamErrorException"


def test_a_cut_stream_ends_the_body_early(simulator: RunningServer) -> None:
    set_faults(simulator, "m", cut_after_chunks=2)
    response = bedrock(simulator).converse_stream(modelId="m", messages=USER_HELLO)
    with pytest.raises(urllib3.exceptions.ProtocolError):
        stream_events(response)


def test_a_repeated_cache_point_prefix_is_read_from_cache(simulator: RunningServer) -> None:
    client = bedrock(simulator)
    system = [{"text": "a long and stable system prompt"}, {"cachePoint": {"type": "default"}}]
    first = client.converse(modelId="m", messages=USER_HELLO, system=system)["usage"]
    second = client.converse(modelId="m", messages=USER_HELLO, system=system)["usage"]
    assert (first["cacheWriteInputTokens"], first["cacheReadInputTokens"]) == (6, 0)
    assert (second["cacheWriteInputTokens"], second["cacheReadInputTokens"]) == (0, 6)
    assert second["inputTokens"] == 5


def test_thinking_streams_reasoning_before_the_text(simulator: RunningServer) -> None:
    events = stream_events(
        bedrock(simulator).converse_stream(
            modelId="m",
            messages=USER_HELLO,
            additionalModelRequestFields={"thinking": {"type": "enabled", "budget_tokens": 1024}},
        )
    )
    deltas = [e["contentBlockDelta"] for e in events if "contentBlockDelta" in e]
    assert "reasoningContent" in deltas[0]["delta"]
    assert deltas[0]["contentBlockIndex"] == 0
    assert "text" in deltas[-1]["delta"]
    assert deltas[-1]["contentBlockIndex"] == 1


def test_titan_embeddings_through_invoke_model(simulator: RunningServer) -> None:
    response = bedrock(simulator).invoke_model(
        modelId="amazon.titan-embed-text-v2:0",
        body=json.dumps({"inputText": "three little words", "dimensions": 256}),
    )
    body = json.loads(response["body"].read())
    assert len(body["embedding"]) == 256
    assert body["inputTextTokenCount"] == 3
    assert sum(v * v for v in body["embedding"]) == pytest.approx(1.0)
