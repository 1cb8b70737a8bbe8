"""`capstan.testing.simulator`: one ASGI app speaking each vendor's wire format, with faults."""

from capstan.testing.simulator.app import build_simulator
from capstan.testing.simulator.state import Faults, SimulatorState

__all__ = ["Faults", "SimulatorState", "build_simulator"]
