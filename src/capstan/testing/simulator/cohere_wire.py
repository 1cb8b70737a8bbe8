"""The simulator's cohere wire format (being written)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from capstan.testing.simulator.state import SimulatorState


def routes(state: SimulatorState) -> list[BaseRoute]:
    return []
