"""A/B experiments between prompt versions on real traffic through the gateway: sticky
assignment, an even split, and a significance test that names a variant made slower."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.gateway.setup import GatewayUnderTest

_names = itertools.count()


@pytest.fixture
def http(gateway: GatewayUnderTest) -> Iterator[httpx.Client]:
    with gateway.admin() as client:
        yield client


def two_versions(http: httpx.Client, models: tuple[str, str]) -> str:
    """A prompt with v1 and v2 (on `models`), `production` at v1."""
    name = f"experiment-prompt-{next(_names)}"
    for version, model in enumerate(models, start=1):
        response = http.post(
            "/api/v1/prompts",
            json={
                "name": name,
                "model": model,
                "params": {"max_tokens": 8},
                "messages": [{"role": "user", "content": f"Variant {version}."}],
            },
        )
        assert response.status_code == 201, response.text
    response = http.put(f"/api/v1/prompts/{name}/labels/production", json={"version": 1})
    assert response.status_code == 200, response.text
    return name


def start(http: httpx.Client, prompt: str, **fields: Any) -> str:
    name = f"exp-{prompt}"
    body = {
        "name": name,
        "prompt": prompt,
        "variants": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}],
        "sticky_by": "header:x-end-user",
        **fields,
    }
    response = http.post("/api/v1/experiments", json=body)
    assert response.status_code == 201, response.text
    return name


def served_versions(gateway: GatewayUnderTest, prompt: str, users: list[str]) -> list[str]:
    """The prompt version each user's call was served with, calls 16 at a time."""
    headers = {"Authorization": f"Bearer {gateway.key}"}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as client:

        def call(user: str) -> str:
            response = client.post(
                "/v1/chat/completions",
                json={"prompt": {"name": prompt}},
                headers={"x-end-user": user},
            )
            assert response.status_code == 200, response.text
            return response.headers["x-capstan-prompt-version"]

        with ThreadPoolExecutor(16) as pool:
            return list(pool.map(call, users))


def status(http: httpx.Client, experiment: str, requests: int) -> dict[str, Any]:
    """The experiment's status once all `requests` events have landed."""
    deadline = time.monotonic() + 20
    while True:
        response = http.get(f"/api/v1/experiments/{experiment}")
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        if sum(s["requests"] for s in found["summaries"]) >= requests:
            return found
        assert time.monotonic() < deadline, found["summaries"]
        time.sleep(0.1)


def test_a_50_50_experiment_over_10000_users_is_sticky_and_splits_within_2_percent(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    prompt = two_versions(http, ("gpt-4o-mini@sim-openai", "gpt-4o-mini@sim-openai"))
    start(http, prompt)
    users = [f"user-{n}" for n in range(10_000)]
    first = served_versions(gateway, prompt, users)
    again = served_versions(gateway, prompt, users[::10])
    assert again == first[::10]
    share = Counter(first)["1"] / len(first)
    assert 0.48 <= share <= 0.52, share


def test_a_variant_made_slower_upstream_is_named_the_loser(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    prompt = two_versions(http, ("gpt-4o-mini@sim-openai", "gpt-4o@sim-azure"))
    response = httpx.put(
        f"{gateway.simulator}/_sim/faults", json={"model": "gpt-4o", "latency_ms": 25}, timeout=5
    )
    assert response.status_code == 200, response.text
    experiment = start(http, prompt, min_samples=30)
    served = served_versions(gateway, prompt, [f"caller-{n}" for n in range(160)])
    assert set(served) == {"1", "2"}
    found = status(http, experiment, len(served))
    assert (found["winner"], found["loser"]) == (1, 2), found["reason"]
    assert "latency" in found["reason"]
    latency = next(c for c in found["comparisons"] if c["metric"] == "latency_ms")
    assert latency["test"] == "mann-whitney-u"
    assert latency["significant"]


def test_stopping_an_experiment_can_promote_a_variant_to_the_label(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    prompt = two_versions(http, ("gpt-4o-mini@sim-openai", "gpt-4o-mini@sim-openai"))
    experiment = start(http, prompt)
    response = http.post(f"/api/v1/experiments/{experiment}/stop", json={"promote": 2})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "stopped"
    assert served_versions(gateway, prompt, ["anyone", "someone-else"]) == ["2", "2"]
    labels = http.get(f"/api/v1/prompts/{prompt}/history").json()["labels"]
    assert labels == {"production": 2}


def test_a_second_experiment_on_the_same_label_is_refused(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    prompt = two_versions(http, ("gpt-4o-mini@sim-openai", "gpt-4o-mini@sim-openai"))
    start(http, prompt)
    response = http.post(
        "/api/v1/experiments",
        json={
            "name": f"another-{prompt}",
            "prompt": prompt,
            "variants": [{"version": 2}, {"version": 1}],
        },
    )
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")


def test_feedback_reaches_the_experiments_status(
    gateway: GatewayUnderTest, http: httpx.Client
) -> None:
    prompt = two_versions(http, ("gpt-4o-mini@sim-openai", "gpt-4o-mini@sim-openai"))
    experiment = start(http, prompt)
    headers = {"Authorization": f"Bearer {gateway.key}", "x-end-user": "reviewer"}
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"prompt": {"name": prompt}},
        headers=headers,
        timeout=10,
    )
    request_id = response.headers["x-capstan-request-id"]
    sent = http.post("/api/v1/feedback", json={"request_id": request_id, "label": "positive"})
    assert sent.status_code == 201, sent.text
    found = status(http, experiment, 1)
    served = response.headers["x-capstan-prompt-version"]
    summary = next(s for s in found["summaries"] if str(s["version"]) == served)
    assert (summary["feedback_count"], summary["positive_rate"]) == (1, 1.0)
