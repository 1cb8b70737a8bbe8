"""The demo's gateway: one provider per wire format on the upstream simulator, or on the real
vendor when its key is in the environment, and aliases that say which they are.

The simulator runs inside the demo process on its own port, so `make demo` needs no network
and no vendor account; a real key (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY,
CO_API_KEY, or AWS_ACCESS_KEY_ID with AWS_SECRET_ACCESS_KEY) swaps that vendor for the real one.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import uvicorn
import yaml

from capstan.gateway.config.apply import apply_document
from capstan.identity.principal import Principal
from capstan.services import Services
from capstan.testing.simulator import build_simulator


@dataclass(frozen=True)
class Vendor:
    kind: str
    model: str
    env: tuple[str, ...]  # variables that, all set, select the real vendor
    sim_path: str  # where the simulator serves this wire format


VENDORS = {
    "openai": Vendor("openai", "gpt-4o-mini", ("OPENAI_API_KEY",), "/v1"),
    "anthropic": Vendor("anthropic", "claude-haiku-4-5", ("ANTHROPIC_API_KEY",), ""),
    "gemini": Vendor("gemini", "gemini-2.0-flash", ("GEMINI_API_KEY",), "/v1beta"),
    "cohere": Vendor("cohere", "command-r-plus", ("CO_API_KEY",), ""),
    "bedrock": Vendor(
        "bedrock",
        "amazon.nova-lite-v1:0",
        ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
        "",
    ),
}
SIM_AWS = {
    "SIMULATED_AWS_ACCESS_KEY_ID": "AKIDSIMULATED",
    "SIMULATED_AWS_SECRET_ACCESS_KEY": "simulated",
}


def start_simulator(host: str, port: int) -> int:
    """Serve the simulator in a daemon thread; returns the port it listens on."""
    server = uvicorn.Server(
        uvicorn.Config(build_simulator(), host=host, port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True, name="upstream-simulator").start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the upstream simulator did not start")
        time.sleep(0.02)
    sockets = [s for srv in server.servers for s in srv.sockets]
    bound: int = sockets[0].getsockname()[1]
    return bound


def demo_document(simulator_url: str, environ: Mapping[str, str]) -> tuple[str, dict[str, bool]]:
    """The YAML applied to the demo home, and for each vendor whether it is simulated."""
    providers, deployments, simulated = [], [], {}
    for name, vendor in VENDORS.items():
        real = all(environ.get(var) for var in vendor.env)
        simulated[name] = not real
        provider = name if real else f"simulated-{name}"
        spec: dict[str, object] = {"name": provider, "kind": vendor.kind}
        if not real:
            spec["base_url"] = simulator_url + vendor.sim_path
        if vendor.kind == "bedrock":
            key_id, secret = (
                vendor.env
                if real
                else ("SIMULATED_AWS_ACCESS_KEY_ID", "SIMULATED_AWS_SECRET_ACCESS_KEY")
            )
            spec["options"] = {
                "region": environ.get("AWS_REGION", "us-east-1"),
                "aws_access_key_id": f"env:{key_id}",
                "aws_secret_access_key": f"env:{secret}",
            }
        else:
            spec["api_key"] = f"env:{vendor.env[0]}" if real else f"simulated-{name}-key"
        providers.append(spec)
        deployments.append(
            {"name": f"{vendor.model}@{provider}", "provider": provider, "model": vendor.model}
        )
    deployments.append(
        {
            "name": "text-embedding-3-small@" + deployments[0]["provider"],
            "provider": deployments[0]["provider"],
            "model": "text-embedding-3-small",
        }
    )
    names = {name: d["name"] for name, d in zip(VENDORS, deployments, strict=False)}
    aliases = [
        {
            "name": "chat-default",
            "strategy": "weighted",
            "targets": [
                {"deployment": names["openai"], "weight": 3},
                {"deployment": names["anthropic"], "weight": 1},
            ],
            "fallbacks": ["chat-gemini"],
        },
        *(
            {"name": f"chat-{vendor}", "targets": [{"deployment": names[vendor]}]}
            for vendor in ("anthropic", "gemini", "cohere", "bedrock")
        ),
        {"name": "embed-default", "targets": [{"deployment": deployments[-1]["name"]}]},
    ]
    document = {"providers": providers, "deployments": deployments, "aliases": aliases}
    return yaml.safe_dump(document, sort_keys=False), simulated


def configure_demo_gateway(services: Services, admin: Principal, simulator_url: str) -> list[str]:
    """Apply the demo configuration; returns one line per vendor saying where it goes."""
    for name, value in SIM_AWS.items():
        os.environ.setdefault(name, value)
    text, simulated = demo_document(simulator_url, os.environ)
    apply_document(services.gateway, admin, text)
    return [
        f"{vendor:<10} {'simulated (' + simulator_url + ')' if sim else 'real vendor (key in env)'}"
        for vendor, sim in simulated.items()
    ]
