"""A gateway (with its simulator) per test module, as for the gateway tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.setup import GatewayUnderTest, start_gateway


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayUnderTest]:
    yield from start_gateway(Path(tmp_path_factory.mktemp("serving")))
