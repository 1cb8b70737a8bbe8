"""A Capstan gateway configured in front of the upstream simulator, one provider per wire format.

Module-scoped: starting the simulator and a migrated Capstan costs about a second, and the
gateway tests only read configuration. Faults set on the simulator are cleared after each test
by `clean_simulator`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from capstan.bootstrap import initialize
from capstan.config import Settings
from capstan.services import Services
from capstan.testing.simulator import build_simulator
from tests.servers import RunningServer, start_asgi, start_server

MASTER_KEY = "dGVzdC1tYXN0ZXIta2V5LTMyLWJ5dGVzLWxvbmctISE="
AWS_ENV = {"SIM_AWS_ACCESS_KEY_ID": "AKIDSIMULATED", "SIM_AWS_SECRET_ACCESS_KEY": "sim-secret"}

# One deployment per wire format, each named after the kind it speaks.
DEPLOYMENTS = {
    "openai": "gpt-4o-mini@sim-openai",
    "azure": "gpt-4o@sim-azure",
    "anthropic": "claude-haiku@sim-anthropic",
    "gemini": "gemini-2.0-flash@sim-gemini",
    "cohere": "command-r@sim-cohere",
    "bedrock": "nova-lite@sim-bedrock",
}


def config_document(sim: str) -> str:
    return f"""
providers:
  - {{name: sim-openai, kind: openai, base_url: "{sim}/v1", api_key: sk-sim-openai}}
  - name: sim-azure
    kind: azure
    base_url: "{sim}"
    api_key: az-sim
    options: {{api_version: "2024-10-21"}}
  - {{name: sim-anthropic, kind: anthropic, base_url: "{sim}", api_key: sk-ant-sim}}
  - {{name: sim-gemini, kind: gemini, base_url: "{sim}/v1beta", api_key: g-sim}}
  - {{name: sim-cohere, kind: cohere, base_url: "{sim}", api_key: co-sim}}
  - name: sim-bedrock
    kind: bedrock
    base_url: "{sim}"
    options:
      region: us-east-1
      aws_access_key_id: env:SIM_AWS_ACCESS_KEY_ID
      aws_secret_access_key: env:SIM_AWS_SECRET_ACCESS_KEY
  - {{name: sim-broken, kind: openai, base_url: "{sim}/v1", api_key: bad-key}}
deployments:
  - {{name: gpt-4o-mini@sim-openai, provider: sim-openai, model: gpt-4o-mini}}
  - {{name: gpt-4o@sim-azure, provider: sim-azure, model: gpt-4o}}
  - {{name: claude-haiku@sim-anthropic, provider: sim-anthropic, model: claude-simulated}}
  - {{name: gemini-2.0-flash@sim-gemini, provider: sim-gemini, model: gemini-2.0-flash}}
  - {{name: command-r@sim-cohere, provider: sim-cohere, model: command-r-plus}}
  - {{name: nova-lite@sim-bedrock, provider: sim-bedrock, model: amazon.nova-lite-v1:0}}
  - {{name: embed-small@sim-openai, provider: sim-openai, model: text-embedding-3-small}}
  - {{name: gpt-4o-mini@sim-broken, provider: sim-broken, model: gpt-4o-mini}}
  - {{name: missing@sim-openai, provider: sim-openai, model: unknown-model}}
aliases:
  - name: chat-default
    strategy: weighted
    targets:
      - {{deployment: gpt-4o-mini@sim-openai, weight: 3}}
      - {{deployment: claude-haiku@sim-anthropic, weight: 1}}
  - name: chat-with-fallback
    strategy: priority
    targets:
      - {{deployment: gpt-4o-mini@sim-broken, priority: 0}}
    fallbacks: [claude-haiku@sim-anthropic]
"""


@dataclass
class GatewayUnderTest:
    url: str
    key: str
    simulator: str
    settings: Settings

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=10
        )


def start_gateway(
    tmp: Path,
    document: Callable[[str], str] = config_document,
    **settings_overrides: Any,
) -> Iterator[GatewayUnderTest]:
    """Simulator + Capstan on SQLite, configured with `document(simulator_url)` through the
    API, with `settings_overrides` on top of the test settings."""
    saved = {name: os.environ.get(name) for name in AWS_ENV}
    os.environ.update(AWS_ENV)
    simulator = start_asgi(build_simulator())
    settings = Settings(
        home=tmp / "home",
        database_url=f"sqlite:///{tmp}/capstan.db",
        master_key=MASTER_KEY,
        **settings_overrides,
    )
    services = Services.build(settings)
    admin_key = initialize(services).admin_key
    services.close()
    assert admin_key is not None
    server: RunningServer = start_server(settings)
    gateway = GatewayUnderTest(server.url, admin_key.plaintext, simulator.url, settings)
    try:
        with gateway.admin() as client:
            response = client.post(
                "/api/v1/config/apply", json={"document": document(simulator.url)}
            )
            assert response.status_code == 200, response.text
        yield gateway
    finally:
        server.stop()
        simulator.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def clean_simulator(gateway: GatewayUnderTest) -> None:
    httpx.delete(f"{gateway.simulator}/_sim/faults", timeout=5)


def request_event(http: httpx.Client, request_id: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """The stored request event (the pipeline lands events within a fraction of a second)."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = http.get(f"/api/v1/requests/{request_id}")
        if response.status_code == 200:
            found: dict[str, Any] = response.json()
            return found
        assert response.status_code == 404, response.text
        assert time.monotonic() < deadline, f"no event for {request_id}"
        time.sleep(0.05)
