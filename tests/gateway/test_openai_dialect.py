"""The OpenAI dialect through the official SDK: async, embeddings, models, headers, errors as
the SDK's own exception classes, fallbacks, and configuration changes taking effect at once."""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import replace

import httpx
import openai
import pytest

from tests.gateway.setup import (
    DEPLOYMENTS,
    GatewayUnderTest,
)
from tests.openai_spec import WireRecorder, validate_openai, validate_openai_exchange
from tests.servers import start_server

OPENAI = DEPLOYMENTS["openai"]


def chat(gateway: GatewayUnderTest, body: object, **headers: str) -> httpx.Response:
    auth = {"Authorization": f"Bearer {gateway.key}", **headers}
    return httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers=auth, timeout=10)


def hello(model: str = OPENAI) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hello"}]}


def test_the_async_client_works(gateway: GatewayUnderTest) -> None:
    async def call() -> str | None:
        async with openai.AsyncOpenAI(
            base_url=gateway.url + "/v1", api_key=gateway.key, max_retries=0
        ) as sdk:
            stream = await sdk.chat.completions.create(
                model=OPENAI, messages=[{"role": "user", "content": "hi async"}], stream=True
            )
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert (asyncio.run(call()) or "").startswith("Echo: hi async.")


def test_a_stream_without_include_usage_carries_no_usage_chunk(
    openai_client: openai.OpenAI, recorder: WireRecorder
) -> None:
    chunks = list(
        openai_client.chat.completions.create(
            model=OPENAI, messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    validate_openai_exchange(recorder.last, "CreateChatCompletionStreamResponse")
    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)


def test_served_responses_name_the_request_and_the_deployment(gateway: GatewayUnderTest) -> None:
    response = chat(gateway, hello("chat-default"))
    assert response.status_code == 200
    assert response.headers["x-capstan-request-id"]
    assert response.headers["x-capstan-deployment"] in {
        DEPLOYMENTS["openai"],
        DEPLOYMENTS["anthropic"],
    }
    assert response.headers["x-capstan-attempts"] == "1"


def test_the_key_may_come_in_x_api_key(gateway: GatewayUnderTest) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json=hello(),
        headers={"x-api-key": gateway.key},
        timeout=10,
    )
    assert response.status_code == 200


def test_embeddings_in_the_sdk_default_base64_and_in_floats(
    openai_client: openai.OpenAI, recorder: WireRecorder
) -> None:
    default = openai_client.embeddings.create(model="embed-small@sim-openai", input=["a", "b c"])
    floats = openai_client.embeddings.create(
        model="embed-small@sim-openai", input="a", encoding_format="float"
    )
    validate_openai_exchange(recorder.last, "CreateEmbeddingResponse")
    assert len(default.data) == 2
    assert default.data[0].embedding == pytest.approx(floats.data[0].embedding, rel=1e-6)
    assert default.usage.prompt_tokens == 3


def test_base64_embeddings_are_little_endian_float32(gateway: GatewayUnderTest) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/embeddings",
        json={"model": "embed-small@sim-openai", "input": "a", "encoding_format": "base64"},
        headers={"Authorization": f"Bearer {gateway.key}"},
        timeout=10,
    )
    raw = base64.b64decode(response.json()["data"][0]["embedding"])
    assert len(raw) % 4 == 0
    assert len(raw) // 4 == 1536


def test_models_lists_aliases_and_deployments(openai_client: openai.OpenAI) -> None:
    ids = {model.id for model in openai_client.models.list()}
    assert {"chat-default", "chat-with-fallback", *DEPLOYMENTS.values()} <= ids
    assert openai_client.models.retrieve("chat-default").id == "chat-default"


def test_the_model_list_matches_the_spec(gateway: GatewayUnderTest) -> None:
    headers = {"Authorization": f"Bearer {gateway.key}"}
    listing = httpx.get(f"{gateway.url}/v1/models", headers=headers, timeout=10).json()
    validate_openai("ListModelsResponse", listing)


def test_an_unknown_key_is_an_authentication_error(gateway: GatewayUnderTest) -> None:
    with (
        openai.OpenAI(base_url=gateway.url + "/v1", api_key="cap_nope", max_retries=0) as sdk,
        pytest.raises(openai.AuthenticationError),
    ):
        sdk.chat.completions.create(model=OPENAI, messages=[{"role": "user", "content": "x"}])


def test_an_unknown_model_is_a_not_found_error(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.chat.completions.create(
            model="nope", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        openai_client.models.retrieve("nope")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": OPENAI, "messages": []}, "messages"),
        ({"model": OPENAI}, "messages"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": OPENAI, "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": OPENAI, "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({**hello(), "stream": "yes"}, "stream"),
        ({**hello(), "max_tokens": 0}, "max_tokens"),
        ({**hello(), "max_tokens": True}, "max_tokens"),
        ({**hello(), "n": 1.5}, "n"),
        ({**hello(), "temperature": "hot"}, "temperature"),
        ({**hello(), "stream_options": []}, "stream_options"),
        ({**hello(), "tools": {}}, "tools"),
    ],
)
def test_bad_input_is_a_400_in_openai_shape_naming_the_field(
    gateway: GatewayUnderTest, body: dict[str, object], param: str
) -> None:
    response = chat(gateway, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    validate_openai("ErrorResponse", response.json())


def test_malformed_json_is_a_400(gateway: GatewayUnderTest) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        content=b"{not json",
        headers={"Authorization": f"Bearer {gateway.key}", "content-type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_a_body_over_the_limit_is_a_413(gateway: GatewayUnderTest) -> None:
    huge = "word " * (2 * 1024 * 1024)
    response = chat(gateway, {**hello(), "messages": [{"role": "user", "content": huge}]})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


def test_a_feature_the_upstream_cannot_express_is_a_400_naming_it(
    openai_client: openai.OpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(
            model=DEPLOYMENTS["anthropic"],
            messages=[{"role": "user", "content": "x"}],
            n=2,
        )
    assert caught.value.param == "n"


def test_an_upstream_rate_limit_is_a_rate_limit_error_with_retry_after(
    gateway: GatewayUnderTest, openai_client: openai.OpenAI
) -> None:
    httpx.put(
        f"{gateway.simulator}/_sim/faults",
        json={"model": "gpt-4o-mini", "burst_429": 5, "retry_after_s": 7},
    ).raise_for_status()
    with pytest.raises(openai.RateLimitError) as caught:
        openai_client.chat.completions.create(
            model=OPENAI, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.response.headers["retry-after"] == "7"


def test_a_failing_deployment_falls_back_without_leaking_its_credentials(
    gateway: GatewayUnderTest,
) -> None:
    response = chat(gateway, hello("chat-with-fallback"))
    assert response.status_code == 200
    assert response.headers["x-capstan-deployment"] == DEPLOYMENTS["anthropic"]
    assert response.headers["x-capstan-attempts"] == "2"
    failed = chat(gateway, hello("gpt-4o-mini@sim-broken"))
    assert failed.status_code == 502
    assert "bad-key" not in failed.text


def test_a_model_the_vendor_does_not_know_is_a_not_found_error(
    openai_client: openai.OpenAI,
) -> None:
    with pytest.raises(openai.NotFoundError):
        openai_client.chat.completions.create(
            model="missing@sim-openai", messages=[{"role": "user", "content": "x"}]
        )


def test_a_new_alias_is_served_on_the_next_request(gateway: GatewayUnderTest) -> None:
    with gateway.admin() as admin:
        created = admin.post(
            "/api/v1/aliases",
            json={"name": "brand-new", "targets": [{"deployment": DEPLOYMENTS["gemini"]}]},
        )
        assert created.status_code == 201, created.text
    response = chat(gateway, hello("brand-new"))
    assert response.status_code == 200
    assert response.headers["x-capstan-deployment"] == DEPLOYMENTS["gemini"]


def test_unknown_and_passthrough_fields_reach_an_openai_compatible_upstream(
    gateway: GatewayUnderTest,
) -> None:
    extras = {
        "user": "ana",
        "metadata": {"ticket": "T-1"},
        "seed": 7,
        "vendor_knob": {"depth": 3},
    }
    response = chat(gateway, {**hello(), **extras})
    assert response.status_code == 200
    received = httpx.get(f"{gateway.simulator}/_sim/requests", timeout=5).json()[-1]["body"]
    assert {name: received.get(name) for name in extras} == extras
    assert received["model"] == "gpt-4o-mini"


def test_a_change_made_on_one_replica_is_served_by_another_within_one_second(
    gateway: GatewayUnderTest,
) -> None:
    other = start_server(gateway.settings)
    try:
        assert chat(gateway, hello("late-alias")).status_code == 404
        with gateway.admin() as admin:
            created = admin.post(
                "/api/v1/aliases",
                json={"name": "late-alias", "targets": [{"deployment": DEPLOYMENTS["cohere"]}]},
            )
            assert created.status_code == 201, created.text
        changed = time.monotonic()
        while True:
            response = chat(replace(gateway, url=other.url), hello("late-alias"))
            if response.status_code == 200 or time.monotonic() - changed > 3:
                break
            time.sleep(0.02)
        elapsed = time.monotonic() - changed
    finally:
        other.stop()
    assert response.status_code == 200
    assert elapsed < 1.0
