"""`/v1/embeddings` served by a model inside the gateway (the `local` provider kind), called
with the official OpenAI SDK like any vendor's embeddings."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest

from tests.gateway.setup import GatewayUnderTest, request_event

LOCAL = """
providers:
  - {name: in-process, kind: local}
deployments:
  - {name: minilm@local, provider: in-process, model: all-minilm-l6-v2}
aliases:
  - {name: embed-local, strategy: priority, targets: [{deployment: minilm@local}]}
"""


@pytest.fixture(scope="module")
def local(gateway: GatewayUnderTest) -> GatewayUnderTest:
    with gateway.admin() as admin:
        response = admin.post("/api/v1/config/apply", json={"document": LOCAL})
        assert response.status_code == 200, response.text
    return gateway


@pytest.fixture
def client(local: GatewayUnderTest) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{local.url}/v1", api_key=local.key, max_retries=0) as sdk:
        yield sdk


def test_the_sdk_gets_unit_vectors_of_384_dimensions(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="embed-local", input=["a loan", "a mortgage"])
    vectors = np.array([item.embedding for item in result.data])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert result.usage.prompt_tokens > 0


def test_floats_and_base64_carry_the_same_vector(client: openai.OpenAI) -> None:
    as_floats = (
        client.embeddings.create(model="minilm@local", input="credit risk", encoding_format="float")
        .data[0]
        .embedding
    )
    as_base64 = (
        client.embeddings.create(model="minilm@local", input="credit risk").data[0].embedding
    )
    assert np.allclose(as_floats, as_base64, atol=1e-6)


def test_a_local_embedding_is_a_request_event(local: GatewayUnderTest) -> None:
    response = httpx.post(
        f"{local.url}/v1/embeddings",
        json={"model": "embed-local", "input": "hello"},
        headers={"Authorization": f"Bearer {local.key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    with local.admin() as admin:
        event = request_event(admin, response.headers["x-capstan-request-id"])
    assert (event["provider"], event["deployment"]) == ("in-process", "minilm@local")


def test_token_arrays_are_refused_with_a_400_naming_input(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="embed-local", input=[[1, 2, 3]])
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == "input"


def test_chat_on_the_local_provider_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="minilm@local", messages=[{"role": "user", "content": "hi"}]
        )
