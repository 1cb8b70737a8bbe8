"""`capstan.prompts.get` and `PromptClient` against a real Capstan server: caching for a TTL,
revalidating with the ETag, and falling back to the last good copy when the server is gone."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import httpx
import pytest

from capstan import prompts
from capstan.prompts.client import close_default_clients
from capstan.prompts.variables import PromptInputError
from tests.apiclient import bearer, make_key
from tests.servers import RunningServer, free_port

TTL = 0.05
PAST_TTL = 0.08
SUPPORT_REPLY = {
    "name": "support-reply",
    "messages": [{"role": "system", "content": "About {{ product }}."}],
    "variables": {"product": "string"},
}


@dataclass
class Seen:
    """What reached the server, recorded by the client's own event hooks."""

    requests: list[httpx.Request] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    def client(self) -> httpx.Client:
        return httpx.Client(
            event_hooks={
                "request": [self.requests.append],
                "response": [lambda response: self.statuses.append(response.status_code)],
            }
        )


@pytest.fixture
def service_key(admin: httpx.Client) -> str:
    """A service key, which is what an application holds; version 1 labelled production."""
    pushed = admin.post("/api/v1/prompts", json=SUPPORT_REPLY)
    assert pushed.status_code == 201, pushed.text
    moved = admin.put("/api/v1/prompts/support-reply/labels/production", json={"version": 1})
    assert moved.status_code == 200, moved.text
    key: str = make_key(admin, "service")["key"]
    return key


@pytest.fixture
def seen() -> Seen:
    return Seen()


def push_v2(admin: httpx.Client) -> None:
    changed = {**SUPPORT_REPLY, "messages": [{"role": "system", "content": "On {{ product }}."}]}
    response = admin.post("/api/v1/prompts", json=changed)
    assert response.status_code == 201, response.text
    assert response.json()["version"] == 2


def test_get_by_label_returns_the_labelled_version_and_renders(
    server: RunningServer, admin: httpx.Client, service_key: str
) -> None:
    push_v2(admin)  # newer, but production still points at 1
    with prompts.PromptClient(server.url, service_key) as client:
        prompt = client.get("support-reply")
    assert (prompt.name, prompt.version, prompt.labels) == ("support-reply", 1, ("production",))
    assert prompt.stale is False
    assert prompt.etag.startswith('"')
    assert prompt.render(product="Capstan") == [{"role": "system", "content": "About Capstan."}]


def test_get_by_version_and_latest(
    server: RunningServer, admin: httpx.Client, service_key: str
) -> None:
    push_v2(admin)
    with prompts.PromptClient(server.url, service_key) as client:
        assert client.get("support-reply", version=1).version == 1
        assert client.get("support-reply", label="latest").version == 2


def test_render_names_a_missing_variable(server: RunningServer, service_key: str) -> None:
    with prompts.PromptClient(server.url, service_key) as client:
        prompt = client.get("support-reply")
    with pytest.raises(PromptInputError, match="missing variable `product`") as raised:
        prompt.render()
    assert raised.value.status == 400
    assert raised.value.field == "prompt.variables.product"


def test_within_the_ttl_no_request_reaches_the_server(
    server: RunningServer, service_key: str, seen: Seen
) -> None:
    with seen.client() as http:
        client = prompts.PromptClient(server.url, service_key, ttl_s=60, http=http)
        first = client.get("support-reply")
        again = client.get("support-reply", label="production")
    assert again is first
    assert seen.statuses == [200]


def test_after_the_ttl_a_revalidation_gets_304_and_keeps_the_copy(
    server: RunningServer, service_key: str, seen: Seen
) -> None:
    with seen.client() as http:
        client = prompts.PromptClient(server.url, service_key, ttl_s=TTL, http=http)
        first = client.get("support-reply")
        time.sleep(PAST_TTL)
        second = client.get("support-reply")
    assert seen.statuses == [200, 304]
    assert seen.requests[1].headers["if-none-match"] == first.etag
    assert (second.version, second.etag, second.stale) == (1, first.etag, False)
    assert second.fetched_at > first.fetched_at


def test_a_moved_label_is_picked_up_after_the_ttl(
    server: RunningServer, admin: httpx.Client, service_key: str, seen: Seen
) -> None:
    push_v2(admin)
    with seen.client() as http:
        client = prompts.PromptClient(server.url, service_key, ttl_s=TTL, http=http)
        assert client.get("support-reply").version == 1
        moved = admin.put("/api/v1/prompts/support-reply/labels/production", json={"version": 2})
        assert moved.status_code == 200, moved.text
        time.sleep(PAST_TTL)
        prompt = client.get("support-reply")
    assert seen.statuses == [200, 200]
    assert prompt.version == 2
    assert prompt.render(product="Capstan") == [{"role": "system", "content": "On Capstan."}]


def test_with_the_server_down_the_last_good_copy_is_served_stale(
    server: RunningServer, service_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    with prompts.PromptClient(server.url, service_key, ttl_s=TTL, timeout_s=2) as client:
        fresh = client.get("support-reply")
        server.stop()
        time.sleep(PAST_TTL)
        with caplog.at_level(logging.WARNING, logger="capstan.prompts.client"):
            stale = client.get("support-reply")
    assert (stale.version, stale.etag, stale.stale) == (1, fresh.etag, True)
    assert stale.render(product="Capstan") == [{"role": "system", "content": "About Capstan."}]
    assert "last good copy of prompt 'support-reply'" in caplog.text


def test_without_a_copy_an_unreachable_server_is_unavailable() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with (
        prompts.PromptClient(closed, "ck-anything") as client,
        pytest.raises(prompts.PromptUnavailable, match="could not be reached"),
    ):
        client.get("support-reply")


def test_an_unknown_prompt_is_not_found(server: RunningServer, service_key: str) -> None:
    with prompts.PromptClient(server.url, service_key) as client:
        with pytest.raises(prompts.PromptNotFound) as raised:
            client.get("no-such-prompt")
        with pytest.raises(LookupError, match="no label 'staging'"):
            client.get("support-reply", label="staging")
    assert raised.value.status == 404


def test_a_rejected_key_raises_with_the_servers_detail(
    service_key: str, server: RunningServer
) -> None:
    with (
        prompts.PromptClient(server.url, "ck-not-a-key") as client,
        pytest.raises(prompts.PromptClientError) as raised,
    ):
        client.get("support-reply")
    assert raised.value.status == 401
    assert not isinstance(raised.value, prompts.PromptNotFound | prompts.PromptUnavailable)
    refused = httpx.get(
        f"{server.url}/api/v1/prompts/support-reply", headers=bearer("ck-not-a-key")
    )
    assert refused.status_code == 401
    assert f"{refused.json()['detail']} (HTTP 401)" in str(raised.value)


def test_module_level_get_reads_the_environment(
    server: RunningServer, service_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAPSTAN_URL", server.url)
    monkeypatch.setenv("CAPSTAN_API_KEY", service_key)
    try:
        prompt = prompts.get("support-reply")
        assert prompts.get("support-reply") is prompt  # one shared client, one cache
    finally:
        close_default_clients()
    assert prompt.version == 1


def test_without_the_environment_the_missing_variable_is_named() -> None:
    with pytest.raises(ValueError, match="CAPSTAN_URL"):
        prompts.get("support-reply")
    with pytest.raises(ValueError, match="CAPSTAN_API_KEY"):
        prompts.PromptClient("http://127.0.0.1:1")


def test_a_label_and_a_version_together_are_refused() -> None:
    with (
        prompts.PromptClient("http://127.0.0.1:1", "ck-anything") as client,
        pytest.raises(ValueError, match="not both"),
    ):
        client.get("support-reply", label="production", version=1)
