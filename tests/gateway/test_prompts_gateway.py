"""Managed prompts served by the gateway: a request names a prompt (in its body or a header),
the gateway renders it into the request before routing, and answers with the version used."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from tests.apiclient import bearer
from tests.databases import require_redis
from tests.gateway.setup import GatewayUnderTest, request_event
from tests.servers import start_server

_names = itertools.count()


@pytest.fixture
def http(gateway: GatewayUnderTest) -> Iterator[httpx.Client]:
    with gateway.admin() as client:
        yield client


def push(http: httpx.Client, name: str, **fields: Any) -> int:
    response = http.post("/api/v1/prompts", json={"name": name, **fields})
    assert response.status_code in (200, 201), response.text
    version: int = response.json()["version"]
    return version


def label(http: httpx.Client, name: str, version: int, label: str = "production") -> None:
    response = http.put(f"/api/v1/prompts/{name}/labels/{label}", json={"version": version})
    assert response.status_code == 200, response.text


def support_prompt(http: httpx.Client, **overrides: Any) -> str:
    """A fresh prompt (its own name) with v1 at `production`."""
    name = f"support-reply-{next(_names)}"
    fields: dict[str, Any] = {
        "model": "gpt-4o-mini@sim-openai",
        "params": {"temperature": 0.2, "max_tokens": 40},
        "variables": {"product": "string", "tier": {"type": "string", "enum": ["free", "pro"]}},
        "messages": [
            {"role": "system", "content": "You answer questions about {{ product }}."},
            {"role": "user", "content": "I am a {{ tier }} customer."},
        ],
    }
    push(http, name, **(fields | overrides))
    label(http, name, 1)
    return name


def chat(gateway: GatewayUnderTest, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {gateway.key}", **headers},
        timeout=10,
    )


def last_upstream_body(gateway: GatewayUnderTest) -> dict[str, Any]:
    received = httpx.get(f"{gateway.simulator}/_sim/requests", timeout=5).json()
    body: dict[str, Any] = received[-1]["body"]
    return body


def test_a_prompt_in_the_body_is_rendered_before_the_clients_messages(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    name = support_prompt(http)
    response = chat(
        gateway,
        {
            "prompt": {"name": name, "variables": {"product": "Ledger", "tier": "pro"}},
            "messages": [{"role": "user", "content": "How do I export?"}],
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-capstan-prompt-version"] == "1"
    sent = last_upstream_body(gateway)
    assert sent["messages"] == [
        {"role": "system", "content": "You answer questions about Ledger."},
        {"role": "user", "content": "I am a pro customer."},
        {"role": "user", "content": "How do I export?"},
    ]
    assert "prompt" not in sent


def test_the_prompts_model_and_parameters_apply_where_the_request_sets_none(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    name = support_prompt(http)
    variables = {"product": "Ledger", "tier": "free"}
    response = chat(gateway, {"prompt": {"name": name, "variables": variables}})
    assert response.status_code == 200, response.text
    sent = last_upstream_body(gateway)
    assert sent["model"] == "gpt-4o-mini"
    assert sent["temperature"] == 0.2
    assert sent["max_tokens"] == 40


def test_the_requests_own_parameters_win(gateway: GatewayUnderTest, http: httpx.Client) -> None:
    name = support_prompt(http)
    body = {
        "model": "gpt-4o@sim-azure",
        "temperature": 0.9,
        "max_completion_tokens": 12,
        "prompt": {"name": name, "variables": {"product": "Ledger", "tier": "free"}},
    }
    response = chat(gateway, body)
    assert response.status_code == 200, response.text
    sent = last_upstream_body(gateway)
    assert sent["temperature"] == 0.9
    assert "max_tokens" not in sent  # the request set its own limit, under the newer name
    event = request_event(http, response.headers["x-capstan-request-id"])
    assert event["model"] == "gpt-4o@sim-azure"


def test_the_header_names_the_prompt_and_the_body_carries_its_variables(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    name = support_prompt(http)
    response = chat(
        gateway,
        {"prompt": {"variables": {"product": "Vault", "tier": "pro"}}},
        **{"x-capstan-prompt": f"{name}@production"},
    )
    assert response.status_code == 200, response.text
    assert last_upstream_body(gateway)["messages"][0]["content"] == (
        "You answer questions about Vault."
    )


def test_a_version_pinned_by_number_is_served_though_no_label_points_at_it(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    name = support_prompt(http)
    push(http, name, messages=[{"role": "system", "content": "Second version."}])
    push(http, name, messages=[{"role": "system", "content": "Third version."}])
    response = chat(
        gateway,
        {"model": "gpt-4o-mini@sim-openai", "messages": [{"role": "user", "content": "hi"}]},
        **{"x-capstan-prompt": f"{name}@2"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-capstan-prompt-version"] == "2"
    assert last_upstream_body(gateway)["messages"][0]["content"] == "Second version."


def test_the_request_event_records_the_prompt_and_its_version(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    name = support_prompt(http)
    response = chat(
        gateway, {"prompt": {"name": name, "variables": {"product": "Ledger", "tier": "pro"}}}
    )
    event = request_event(http, response.headers["x-capstan-request-id"])
    assert (event["prompt_name"], event["prompt_version"]) == (name, 1)
    listed = http.get("/api/v1/requests", params={"prompt": name}).json()["items"]
    assert [item["id"] for item in listed] == [event["id"]]


def test_a_missing_variable_is_a_400_in_the_openai_shape_that_names_it(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    name = support_prompt(http)
    with (
        openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key) as client,
        pytest.raises(openai.BadRequestError) as caught,
    ):
        client.chat.completions.create(
            model="chat-default",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"prompt": {"name": name, "variables": {"product": "Ledger"}}},
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == "prompt.variables.tier"
    assert "tier" in error["message"]


def test_a_wrongly_typed_variable_is_a_400_that_names_it(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    name = support_prompt(http)
    response = chat(
        gateway, {"prompt": {"name": name, "variables": {"product": 42, "tier": "pro"}}}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "prompt.variables.product"


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ self.__init__.__globals__ }}",
        "{{ product.__class__.__base__ }}",
        "{{ 'a' * 10**9 }}",
    ],
)
def test_a_template_reaching_for_python_internals_fails_safely_with_a_400(
    gateway: GatewayUnderTest, http: httpx.Client, template: str
) -> None:
    name = support_prompt(
        http, variables={"product": "string"}, messages=[{"role": "system", "content": template}]
    )
    response = chat(gateway, {"prompt": {"name": name, "variables": {"product": "x"}}})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_prompt"


def test_an_unknown_prompt_is_a_404(gateway: GatewayUnderTest) -> None:
    response = chat(gateway, {"model": "chat-default", "prompt": {"name": "no-such-prompt"}})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "prompt_not_found"


def test_a_prompt_without_a_production_label_is_a_404_naming_the_label(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    name = f"unlabelled-{next(_names)}"
    push(http, name, messages=[{"role": "system", "content": "hello"}])
    response = chat(gateway, {"model": "chat-default", "prompt": {"name": name}})
    assert response.status_code == 404
    assert "production" in response.json()["error"]["message"]


def test_an_anthropic_message_gets_the_rendered_system_prompt(
    gateway: GatewayUnderTest, http: httpx.Client, anthropic_client: anthropic.Anthropic
) -> None:
    name = support_prompt(http, model="claude-haiku@sim-anthropic")
    message = anthropic_client.messages.create(
        model="claude-haiku@sim-anthropic",
        max_tokens=50,
        system="Be brief.",
        messages=[{"role": "user", "content": "How do I export?"}],
        extra_body={"prompt": {"name": name, "variables": {"product": "Ledger", "tier": "pro"}}},
    )
    assert message.content
    sent = last_upstream_body(gateway)
    assert sent["system"] == "You answer questions about Ledger.\n\nBe brief."
    assert sent["messages"][0] == {"role": "user", "content": "I am a pro customer."}
    assert sent["max_tokens"] == 50  # the request's own


def test_moving_a_label_takes_effect_on_the_next_request(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    name = support_prompt(http)
    push(http, name, messages=[{"role": "system", "content": "Version two."}], variables={})
    body = {"model": "chat-default", "messages": [{"role": "user", "content": "hi"}]}
    header = {"x-capstan-prompt": name}
    label(http, name, 2)
    assert chat(gateway, body, **header).headers["x-capstan-prompt-version"] == "2"
    response = http.post(f"/api/v1/prompts/{name}/labels/production/rollback")
    assert response.status_code == 200, response.text
    variables = {"product": "x", "tier": "pro"}
    after = chat(gateway, body | {"prompt": {"variables": variables}}, **header)
    assert after.headers["x-capstan-prompt-version"] == "1"


def _stream(gateway: GatewayUnderTest, name: str) -> tuple[str, str, str]:
    """One streamed call of `name`@production: (version header, echoed text, model)."""
    body = {"stream": True, "prompt": {"name": name, "variables": {"topic": "exports"}}}
    headers = {"Authorization": f"Bearer {gateway.key}"}
    text, model = "", ""
    with httpx.stream(
        "POST", f"{gateway.url}/v1/chat/completions", json=body, headers=headers, timeout=10
    ) as response:
        assert response.status_code == 200, response.read()
        version = response.headers["x-capstan-prompt-version"]
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = orjson.loads(line[6:])
            assert "error" not in chunk, chunk
            model = chunk.get("model") or model
            for choice in chunk.get("choices") or ():
                text += (choice.get("delta") or {}).get("content") or ""
    return version, text, model


def test_a_label_moved_while_requests_stream_serves_each_wholly_one_version(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    name = f"streamed-{next(_names)}"
    variables = {"topic": "string"}
    for version, model in ((1, "gpt-4o-mini@sim-openai"), (2, "gpt-4o@sim-azure")):
        push(
            http,
            name,
            model=model,
            variables=variables,
            messages=[{"role": "user", "content": f"version {version} on {{{{ topic }}}}"}],
        )
    label(http, name, 1)
    results: list[tuple[str, str, str]] = []
    failures: list[BaseException] = []
    started = threading.Barrier(9)

    def client() -> None:
        started.wait()
        try:
            for _ in range(15):
                results.append(_stream(gateway, name))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    started.wait()
    while len(results) < 30 and not failures:
        threading.Event().wait(0.01)
    label(http, name, 2)
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    assert len(results) == 8 * 15
    upstream = {"1": "gpt-4o-mini", "2": "gpt-4o"}
    for version, text, model in results:
        assert f"version {version} on exports" in text, (version, text)
        assert model.startswith(upstream[version]), (version, model)
    assert {version for version, _, _ in results} == {"1", "2"}
    assert _stream(gateway, name)[0] == "2"


def _seconds_until_version(url: str, key: str, name: str, version: str) -> float:
    started = time.monotonic()
    body = {"model": "chat-default", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {key}", "x-capstan-prompt": name}
    while time.monotonic() - started < 3:
        response = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=5)
        if response.headers.get("x-capstan-prompt-version") == version:
            return time.monotonic() - started
        time.sleep(0.02)
    return float("inf")


def _two_version_prompt(http: httpx.Client) -> str:
    name = f"replicated-{next(_names)}"
    for text in ("one", "two"):
        push(http, name, messages=[{"role": "system", "content": text}])
    label(http, name, 1)
    return name


def test_a_label_moved_on_one_replica_is_served_by_another_within_one_second(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    name = _two_version_prompt(http)
    other = start_server(gateway.settings)
    try:
        assert _seconds_until_version(other.url, gateway.key, name, "1") < 1.0
        label(http, name, 2)
        assert _seconds_until_version(other.url, gateway.key, name, "2") < 1.0
    finally:
        other.stop()


@pytest.mark.redis
def test_with_redis_a_moved_label_reaches_replicas_without_waiting_for_a_poll(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    # A 30 s poll interval: only the Redis channel can deliver the move within a second.
    settings = gateway.settings.model_copy(
        update={"redis_url": require_redis(), "config_poll_interval": 30.0}
    )
    name = _two_version_prompt(http)
    first, second = start_server(settings), start_server(settings)
    try:
        assert _seconds_until_version(second.url, gateway.key, name, "1") < 1.0
        with httpx.Client(base_url=first.url, headers=bearer(gateway.key), timeout=10) as one:
            label(one, name, 2)
        assert _seconds_until_version(second.url, gateway.key, name, "2") < 1.0
    finally:
        first.stop()
        second.stop()
