"""The gateway benchmark's targets, each started on a free loopback port in front of the
stand-in and stopped after its measurements, so no idle target competes for the two cores.

Every target gets the same body with the same model name (`bench-model`; `bench-stream` for the
streaming runs), and every server runs one worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import yaml

from bench.peers import PEERS
from bench.procs import free_port, server

VENV_BIN = Path(sys.executable).parent
CAPSTAN = str(VENV_BIN / "capstan")
MODEL = "bench-model"
STREAM_MODEL = "bench-stream"
MESSAGES = [{"role": "user", "content": "Say hello to the benchmark in one short sentence."}]
BODY = orjson.dumps({"model": MODEL, "messages": MESSAGES, "max_tokens": 64})
STREAM_BODY = orjson.dumps(
    {"model": STREAM_MODEL, "messages": MESSAGES, "max_tokens": 64, "stream": True}
)
UPSTREAM_KEY = "sk-bench-upstream"
MASTER_KEY = "YmVuY2gtbWFzdGVyLWtleS0zMi1ieXRlcy1sb25nISE="  # the home's, as in bench.core
LITELLM_KEY = "sk-bench-litellm-master"


@dataclass
class Target:
    name: str
    url: str  # the chat-completions URL
    headers: dict[str, str] = field(default_factory=dict)
    stream_url: str | None = None  # where `STREAM_BODY` streams, for the TTFB runs
    pid: int | None = None  # the server process, for its memory


Starter = Callable[[], AbstractContextManager[Target]]


@dataclass(frozen=True)
class Skipped:
    """A target not run: its peer is not installed, or (`failed`) its setup broke."""

    name: str
    why: str
    failed: bool = False


def check(target: Target) -> None:
    """One request of each kind, answered correctly: a 401 would be fast and count as load."""
    headers = {"content-type": "application/json", **target.headers}
    response = httpx.post(target.url, content=BODY, headers=headers, timeout=30)
    if response.status_code != 200 or not response.json().get("choices"):
        raise RuntimeError(f"{target.name}: {response.status_code} {response.text[:300]}")
    if target.stream_url:
        response = httpx.post(target.stream_url, content=STREAM_BODY, headers=headers, timeout=30)
        if response.status_code != 200 or "[DONE]" not in response.text:
            raise RuntimeError(
                f"{target.name} stream: {response.status_code} {response.text[:300]}"
            )


def direct(standin_url: str) -> Starter:
    @contextmanager
    def start() -> Iterator[Target]:
        yield Target(
            "direct",
            f"{standin_url}/v1/chat/completions",
            {"Authorization": f"Bearer {UPSTREAM_KEY}"},
            stream_url=f"{standin_url}/stream/v1/chat/completions",
        )

    return start


def floor(standin_url: str) -> Starter:
    @contextmanager
    def start() -> Iterator[Target]:
        port = free_port()
        args = [sys.executable, "-m", "bench.floor_proxy", standin_url, str(port)]
        base = f"http://127.0.0.1:{port}"
        root = str(Path(__file__).resolve().parent.parent)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
        }
        with server(args, env, f"{base}/v1/models", "floor") as proc:
            yield Target("floor", f"{base}/v1/chat/completions", pid=proc.pid)

    return start


# -- Capstan -----------------------------------------------------------------------------------


def capstan_document(standin_url: str) -> str:
    """One provider per stand-in path, a deployment on each, and the aliases clients call."""
    document = {
        "providers": [
            {
                "name": "standin",
                "kind": "openai",
                "base_url": f"{standin_url}/v1",
                "api_key": UPSTREAM_KEY,
            },
            {
                "name": "standin-stream",
                "kind": "openai",
                "base_url": f"{standin_url}/stream/v1",
                "api_key": UPSTREAM_KEY,
            },
        ],
        "deployments": [
            {"name": "gpt-4o-mini@standin", "provider": "standin", "model": "gpt-4o-mini"},
            {
                "name": "gpt-4o-mini@standin-stream",
                "provider": "standin-stream",
                "model": "gpt-4o-mini",
            },
        ],
        "aliases": [
            {"name": MODEL, "targets": [{"deployment": "gpt-4o-mini@standin"}]},
            {"name": STREAM_MODEL, "targets": [{"deployment": "gpt-4o-mini@standin-stream"}]},
        ],
    }
    return yaml.safe_dump(document, sort_keys=False)


@dataclass(frozen=True)
class CapstanHome:
    env: dict[str, str]
    key: str  # a service key: it may only call models


# Four budgets every benchmark request falls under (two on the organization, two on the key),
# with limits no run reaches: what admission and settlement cost, not what a refusal costs.
BUDGETS = (
    ("org-monthly", "org", "monthly", "block"),
    ("org-daily", "org", "daily", "alert-only"),
    ("key-monthly", "key:{key_id}", "monthly", "block"),
    ("key-total", "key:{key_id}", "total", "alert-only"),
)


def capstan_home(folder: Path, standin_url: str, *, budgets: bool = False) -> CapstanHome:
    """`capstan init`, `capstan apply` and a service key, all through the CLI, in `folder`;
    with `budgets`, the four `BUDGETS` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPSTAN_")}
    env |= {
        "CAPSTAN_HOME": str(folder / "home"),
        "CAPSTAN_MASTER_KEY": MASTER_KEY,
        "CAPSTAN_LOG_LEVEL": "warning",
    }

    def capstan(*args: str) -> str:
        done = subprocess.run([CAPSTAN, *args], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"capstan {' '.join(args)} failed: {done.stdout}{done.stderr}")
        return done.stdout

    capstan("init", "--json")
    config = folder / "gateway.yaml"
    config.write_text(capstan_document(standin_url))
    capstan("apply", "-f", str(config))
    issued = orjson.loads(
        capstan("keys", "create", "--role", "service", "--name", "bench", "--json")
    )
    if budgets:
        for name, scope, period, action in BUDGETS:
            capstan(
                *("budgets", "create", name, "--scope", scope.format(key_id=issued["id"])),
                *("--period", period, "--action", action, "--limit-usd", "1000000"),
            )
    return CapstanHome(env, issued["key"])


CAPSTAN_SERVERS = ("uvicorn", "uvicorn-asyncio-h11", "granian")


def capstan_command(kind: str, port: int) -> list[str] | None:
    """How to serve Capstan under `kind`; None when that server is not installed."""
    if kind == "uvicorn":  # the product's own command: uvicorn with uvloop and httptools
        return [CAPSTAN, "serve", "--port", str(port), "--workers", "1"]
    if kind == "uvicorn-asyncio-h11":  # uvicorn's pure-Python loop and parser, for reference
        return [
            *(str(VENV_BIN / "uvicorn"), "--factory", "capstan.app:create_app"),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
            *("--loop", "asyncio", "--http", "h11", "--no-access-log", "--log-level", "warning"),
        ]
    if kind == "granian":
        peer = PEERS["granian"]
        if not peer.installed():
            return None
        return [
            *(str(peer.bin), "--interface", "asgi", "--factory"),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
            *("--loop", "uvloop", "--log-level", "warning", "--no-access-log"),
            "capstan.app:create_app",
        ]
    raise ValueError(f"unknown server {kind}")


def capstan(home: CapstanHome, kind: str = "uvicorn", name: str | None = None) -> Starter | Skipped:
    name = name or ("capstan" if kind == "uvicorn" else f"capstan-{kind}")
    port = free_port()
    args = capstan_command(kind, port)
    if args is None:
        return Skipped(name, f"not installed: {PEERS['granian'].install_hint()}")

    @contextmanager
    def start() -> Iterator[Target]:
        base = f"http://127.0.0.1:{port}"
        with server(args, home.env, f"{base}/healthz", name) as proc:
            yield Target(
                name,
                f"{base}/v1/chat/completions",
                {"Authorization": f"Bearer {home.key}"},
                stream_url=f"{base}/v1/chat/completions",
                pid=proc.pid,
            )

    return start


# -- LiteLLM -----------------------------------------------------------------------------------


def litellm_config(standin_url: str) -> str:
    config = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": "openai/gpt-4o-mini",
                    "api_base": f"{standin_url}/v1",
                    "api_key": UPSTREAM_KEY,
                },
            }
        ],
        "general_settings": {"master_key": LITELLM_KEY},
        "litellm_settings": {"telemetry": False, "turn_off_message_logging": True},
    }
    return yaml.safe_dump(config, sort_keys=False)


def litellm(folder: Path, standin_url: str) -> Starter | Skipped:
    """The LiteLLM proxy from its own venv: master key, no database, quiet logs."""
    peer = PEERS["litellm"]
    if not peer.installed():
        return Skipped("litellm", f"not installed: {peer.install_hint()}")

    @contextmanager
    def start() -> Iterator[Target]:
        config = folder / "litellm.yaml"
        config.write_text(litellm_config(standin_url))
        port = free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("LITELLM", "DATABASE_URL", "OPENAI"))
        }
        env |= {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price map at start
            "LITELLM_LOG": "ERROR",
            "LITELLM_MODE": "PRODUCTION",
        }
        args = [str(peer.bin), "--config", str(config), "--host", "127.0.0.1"]
        args += ["--port", str(port), "--num_workers", "1"]
        base = f"http://127.0.0.1:{port}"
        with server(args, env, f"{base}/health/liveliness", "litellm", timeout_s=180) as proc:
            yield Target(
                "litellm",
                f"{base}/v1/chat/completions",
                {"Authorization": f"Bearer {LITELLM_KEY}"},
                pid=proc.pid,
            )

    return start
