"""The simulator's Azure OpenAI surface: deployments under `/openai/deployments/{name}`, an
`api-version` required, the key in `api-key`; the official `AzureOpenAI` client works on it."""

from __future__ import annotations

import httpx
import httpx2
import openai
import pytest

from tests.openai_spec import COMPLETION, WireRecorder, validate_openai_exchange
from tests.servers import RunningServer
from tests.simulator_fixtures import received, user


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
    assert received(simulator)[-1]["path"] == "/openai/deployments/my-embedder/embeddings"


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
