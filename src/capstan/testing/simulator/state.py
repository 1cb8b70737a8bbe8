"""What the simulator does to each call: faults set per model (or for all), switchable at run
time through `/_sim/faults`, and a log of the requests it received for tests to inspect."""

from __future__ import annotations

import asyncio
import random
from collections import deque
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from capstan.testing.simulator.prompt_cache import PromptCache

ANY_MODEL = "*"
HANG_POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class Faults:
    latency_ms: float = 0.0  # before the response (or the stream's headers)
    ttft_ms: float = 0.0  # before the first streamed token
    tokens_per_s: float = 0.0  # stream pacing; 0 = as fast as possible
    error_rate: float = 0.0  # share of calls that fail with `error_status`
    error_status: int = 500
    fail_next: int = 0  # the next N calls fail with `error_status`
    burst_429: int = 0  # the next N calls get 429 with Retry-After
    retry_after_s: float = 1.0
    cut_after_chunks: int | None = None  # streams stop dead after N content chunks
    hang: bool = False  # never answer (until the fault is lifted)
    context_window: int | None = None  # prompts longer than this (in tokens) are refused
    refuse_content: bool = False  # OpenAI wire: refuse every prompt on content policy

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Faults:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known - {"model"}
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        return cls(**{k: v for k, v in data.items() if k in known})

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class InjectedFailure:
    """A call the faults say must fail: with this HTTP status, and (for a 429) this wait."""

    status: int
    retry_after_s: float


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class SimulatorState:
    seed: int = 0
    faults: dict[str, Faults] = field(default_factory=dict)
    received: deque[ReceivedRequest] = field(default_factory=lambda: deque(maxlen=200))
    prompt_cache: PromptCache = field(default_factory=PromptCache)
    streams_abandoned: int = 0  # streams whose client hung up before the end
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 - fault sampling, not crypto

    def faults_for(self, model: str) -> Faults:
        return self.faults.get(model) or self.faults.get(ANY_MODEL) or Faults()

    def set_faults(self, model: str, faults: Faults) -> None:
        self.faults[model] = faults

    def clear(self) -> None:
        """Forget faults, the request log and the prompt cache: a fresh simulator."""
        self.faults.clear()
        self.received.clear()
        self.streams_abandoned = 0
        self.prompt_cache.clear()

    def record(self, path: str, headers: dict[str, str], body: Any) -> None:
        self.received.append(ReceivedRequest(path, headers, body))

    async def before_response(self, model: str) -> InjectedFailure | None:
        """Apply latency, hangs, 429 bursts and random errors: the failure to answer with, or
        None to answer normally."""
        faults = self.faults_for(model)
        while faults.hang:  # until the fault is lifted, so that clearing faults frees the server
            await asyncio.sleep(HANG_POLL_S)
            faults = self.faults_for(model)
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        key = model if model in self.faults else ANY_MODEL
        if faults.burst_429 > 0:
            self.faults[key] = replace(faults, burst_429=faults.burst_429 - 1)
            return InjectedFailure(429, faults.retry_after_s)
        if faults.fail_next > 0:
            self.faults[key] = replace(faults, fail_next=faults.fail_next - 1)
            return InjectedFailure(faults.error_status, faults.retry_after_s)
        if faults.error_rate and self._rng.random() < faults.error_rate:
            return InjectedFailure(faults.error_status, faults.retry_after_s)
        return None

    async def pace(self, model: str, index: int) -> bool:
        """Wait before streamed chunk `index`; False means the stream must be cut here."""
        faults = self.faults_for(model)
        if index == 0 and faults.ttft_ms:
            await asyncio.sleep(faults.ttft_ms / 1000)
        elif index > 0 and faults.tokens_per_s:
            await asyncio.sleep(1 / faults.tokens_per_s)
        return faults.cut_after_chunks is None or index < faults.cut_after_chunks
