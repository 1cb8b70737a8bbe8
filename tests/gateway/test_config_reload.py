"""A configuration change is served from the very next request, even when that request arrives
while the gateway is still loading the snapshot the change started."""

from __future__ import annotations

from tests.gateway.setup import DEPLOYMENTS, GatewayUnderTest


def test_the_request_after_a_change_sees_it_every_time(gateway: GatewayUnderTest) -> None:
    with gateway.admin() as client:
        for attempt in range(25):
            name = f"fresh-alias-{attempt}"
            alias = {"name": name, "targets": [{"deployment": DEPLOYMENTS["openai"]}]}
            assert client.post("/api/v1/aliases", json=alias).status_code == 201

            response = client.post(
                "/v1/chat/completions",
                json={"model": name, "messages": [{"role": "user", "content": "hi"}]},
            )

            assert response.status_code == 200, (attempt, response.text)


def test_a_deleted_alias_is_gone_from_the_next_request(gateway: GatewayUnderTest) -> None:
    with gateway.admin() as client:
        alias = {"name": "short-lived", "targets": [{"deployment": DEPLOYMENTS["openai"]}]}
        assert client.post("/api/v1/aliases", json=alias).status_code == 201
        assert client.delete("/api/v1/aliases/short-lived").status_code in (200, 204)

        response = client.post(
            "/v1/chat/completions",
            json={"model": "short-lived", "messages": [{"role": "user", "content": "hi"}]},
        )

    assert response.status_code == 404
