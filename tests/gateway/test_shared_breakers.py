"""Two gateway replicas on one database and one Redis: a breaker one replica opens is open on
the other, which then stops calling that upstream too; and routing skips an open breaker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from capstan.bootstrap import initialize
from capstan.config import Settings
from capstan.services import Services
from capstan.testing.simulator import build_simulator
from tests.databases import require_redis
from tests.gateway.setup import MASTER_KEY
from tests.servers import RunningServer, start_asgi, start_server

FAILURES = 2


def document(sim: str) -> str:
    return f"""
providers:
  - {{name: sim, kind: openai, base_url: "{sim}/v1", api_key: sk-sim}}
deployments:
  - {{name: broken@sim, provider: sim, model: broken-model, max_retries: 0}}
  - {{name: healthy@sim, provider: sim, model: healthy-model}}
aliases:
  - name: chat-spread
    targets: [{{deployment: broken@sim, weight: 1}}, {{deployment: healthy@sim, weight: 1}}]
"""


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str, str]]:
    """(replica A url, replica B url, admin key, simulator url)."""
    redis_url = require_redis()
    tmp = Path(tmp_path_factory.mktemp("replicas"))
    simulator = start_asgi(build_simulator())
    settings = Settings(
        home=tmp / "home",
        database_url=f"sqlite:///{tmp}/capstan.db",
        master_key=MASTER_KEY,
        redis_url=redis_url,
        breaker_failures=FAILURES,
        breaker_min_calls=1_000,
        breaker_cooldown_s=60,
    )
    services = Services.build(settings)
    key = initialize(services).admin_key
    services.close()
    assert key is not None
    servers: list[RunningServer] = [start_server(settings), start_server(settings)]
    try:
        response = httpx.post(
            servers[0].url + "/api/v1/config/apply",
            headers={"Authorization": f"Bearer {key.plaintext}"},
            json={"document": document(simulator.url)},
        )
        assert response.status_code == 200, response.text
        httpx.put(
            f"{simulator.url}/_sim/faults",
            json={"model": "broken-model", "error_rate": 1.0, "error_status": 500},
        )
        yield servers[0].url, servers[1].url, key.plaintext, simulator.url
    finally:
        for server in servers:
            server.stop()
        simulator.stop()


@pytest.fixture(autouse=True)
def _no_faults() -> None:
    """The module's faults stay on for all its tests (overrides the package's fixture)."""


def chat(url: str, key: str, model: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": model, "messages": [{"role": "user", "content": uuid.uuid4().hex}]},
        timeout=30,
    )


def calls_to(simulator: str, model: str) -> int:
    received = httpx.get(f"{simulator}/_sim/requests").json()
    return sum(1 for r in received if (r.get("body") or {}).get("model") == model)


def test_a_breaker_opened_on_one_replica_is_open_on_the_other(
    replicas: tuple[str, str, str, str],
) -> None:
    first, second, key, simulator = replicas
    for _ in range(FAILURES):
        assert chat(first, key, "broken@sim").status_code == 502
    calls = calls_to(simulator, "broken-model")
    time.sleep(0.5)  # Redis pub/sub takes milliseconds

    refused = chat(second, key, "broken@sim")  # its first call: it learnt nothing by itself

    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "circuit_open"
    assert calls_to(simulator, "broken-model") == calls


def test_routing_skips_a_deployment_whose_breaker_is_open(
    replicas: tuple[str, str, str, str],
) -> None:
    first, _, key, _ = replicas
    for _ in range(FAILURES):
        chat(first, key, "broken@sim")

    served = [chat(first, key, "chat-spread") for _ in range(10)]

    assert {r.status_code for r in served} == {200}
    assert {r.headers["x-capstan-deployment"] for r in served} == {"healthy@sim"}
    assert {r.headers["x-capstan-attempts"] for r in served} == {"1"}
