"""Fixtures for the data-plane tests: one gateway in front of the simulator per test module,
the official SDKs pointed at it, and faults cleared after every test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx2
import openai
import pytest

from tests.gateway.setup import GatewayUnderTest, clean_simulator, start_gateway
from tests.openai_spec import WireRecorder


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayUnderTest]:
    yield from start_gateway(Path(tmp_path_factory.mktemp("gateway")))


@pytest.fixture(autouse=True)
def _no_faults(gateway: GatewayUnderTest) -> Iterator[None]:
    yield
    clean_simulator(gateway)


@pytest.fixture
def recorder() -> WireRecorder:
    """Keeps the raw bytes of each response, to validate them against OpenAI's spec."""
    return WireRecorder()


@pytest.fixture
def openai_client(gateway: GatewayUnderTest, recorder: WireRecorder) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=gateway.url + "/v1",
        api_key=gateway.key,
        max_retries=0,
        http_client=httpx2.Client(transport=recorder),
    ) as client:
        yield client


@pytest.fixture
def anthropic_client(gateway: GatewayUnderTest) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key=gateway.key, max_retries=0) as client:
        yield client
