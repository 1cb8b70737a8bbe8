"""The upstream simulator in tests: one per test module on a loopback port, the official SDKs
pointed at it, and helpers that steer it through its admin routes (`/_sim/faults`,
`/_sim/requests`).

`tests/conftest.py` registers this module as a plugin, so every test module can ask for the
fixtures. A module whose tests must each start from a clean simulator (no faults, an empty
request log, cold prompt caches) says so with
`pytestmark = pytest.mark.usefixtures("simulator_state")`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest

from capstan.testing.simulator import SimulatorState, build_simulator
from capstan.testing.simulator.state import ANY_MODEL
from tests.openai_spec import WireRecorder
from tests.servers import RunningServer, start_asgi

# The tool schemas the simulator tests offer, in each vendor's tool shape.
WEATHER_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
}
TIME_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"zone": {"type": "string"}},
    "required": ["zone"],
}
ANTHROPIC_WEATHER_TOOL: Any = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": WEATHER_PARAMETERS,
}
ANTHROPIC_TIME_TOOL: Any = {"name": "get_time", "input_schema": TIME_PARAMETERS}


@dataclass
class RunningSimulator(RunningServer):
    """A served simulator and its state, which a test may also read or change in process."""

    state: SimulatorState


def start_simulator() -> RunningSimulator:
    state = SimulatorState()
    running = start_asgi(build_simulator(state))
    return RunningSimulator(running.url, running.server, running.thread, state)


@pytest.fixture(scope="module")
def simulator() -> Iterator[RunningSimulator]:
    running = start_simulator()
    yield running
    running.stop()


@pytest.fixture
def simulator_state(simulator: RunningSimulator) -> Iterator[SimulatorState]:
    """The simulator's state, cleared before the test and after it (clearing the faults also
    frees a request left hanging)."""
    simulator.state.clear()
    yield simulator.state
    simulator.state.clear()


@pytest.fixture
def recorder() -> WireRecorder:
    """Keeps the raw bytes of every response an SDK client built on it receives."""
    return WireRecorder()


def openai_sdk(simulator: RunningServer, **options: Any) -> openai.OpenAI:
    """The OpenAI SDK on the simulator: a valid key and no retries unless `options` say."""
    options.setdefault("api_key", "sk-test")
    options.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=simulator.url + "/v1", **options)


def async_openai_sdk(simulator: RunningServer, **options: Any) -> openai.AsyncOpenAI:
    options.setdefault("api_key", "sk-test")
    options.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(base_url=simulator.url + "/v1", **options)


def anthropic_sdk(simulator: RunningServer, **options: Any) -> anthropic.Anthropic:
    """The Anthropic SDK on the simulator: a valid key and no retries unless `options` say."""
    options.setdefault("api_key", "sk-ant-test")
    options.setdefault("max_retries", 0)
    return anthropic.Anthropic(base_url=simulator.url, **options)


def async_anthropic_sdk(simulator: RunningServer, **options: Any) -> anthropic.AsyncAnthropic:
    options.setdefault("api_key", "sk-ant-test")
    options.setdefault("max_retries", 0)
    return anthropic.AsyncAnthropic(base_url=simulator.url, **options)


@pytest.fixture
def openai_client(simulator: RunningServer, recorder: WireRecorder) -> Iterator[openai.OpenAI]:
    """The OpenAI SDK on the simulator, its responses kept by `recorder`."""
    with openai_sdk(simulator, http_client=httpx2.Client(transport=recorder)) as sdk:
        yield sdk


@pytest.fixture
def anthropic_client(simulator: RunningServer) -> Iterator[anthropic.Anthropic]:
    with anthropic_sdk(simulator) as sdk:
        yield sdk


def user(text: str) -> list[Any]:
    """A conversation of one user message, in the OpenAI and Anthropic shape."""
    return [{"role": "user", "content": text}]


def set_faults(simulator: RunningServer, model: str = ANY_MODEL, **faults: Any) -> None:
    """Set the faults of `model` (all models by default) through `PUT /_sim/faults`."""
    httpx.put(f"{simulator.url}/_sim/faults", json={"model": model, **faults}).raise_for_status()


def received(simulator: RunningServer) -> list[dict[str, Any]]:
    """The requests the simulator received, oldest first, without credential headers."""
    log: list[dict[str, Any]] = httpx.get(f"{simulator.url}/_sim/requests").json()
    return log


def last_body(simulator: RunningServer) -> Any:
    """The JSON body of the last request the simulator received."""
    return received(simulator)[-1]["body"]
