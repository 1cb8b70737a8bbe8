"""`capstan upstream-sim`: serve the upstream simulator, so that demos, load tests and manual
checks of the gateway need no vendor account and cost nothing.

The flags set the faults every model starts with; `PUT /_sim/faults` changes them while it runs.
"""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from capstan.cli.output import console
from capstan.testing.simulator import Faults, SimulatorState, build_simulator
from capstan.testing.simulator.state import ANY_MODEL


def upstream_sim(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.", min=1, max=65535)] = 9100,
    latency_ms: Annotated[
        float, typer.Option(min=0.0, help="Delay before every response, in milliseconds.")
    ] = 0.0,
    ttft_ms: Annotated[
        float, typer.Option(min=0.0, help="Delay before a stream's first token, in milliseconds.")
    ] = 0.0,
    tokens_per_s: Annotated[
        float, typer.Option(min=0.0, help="Streaming speed; 0 streams as fast as possible.")
    ] = 0.0,
    error_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of calls that fail with a 500.")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed for the random fault sampling.")] = 0,
) -> None:
    """Serve fake OpenAI, Anthropic, Gemini, Cohere and Bedrock endpoints for tests and demos."""
    faults = Faults(
        latency_ms=latency_ms,
        ttft_ms=ttft_ms,
        tokens_per_s=tokens_per_s,
        error_rate=error_rate,
    )
    state = SimulatorState(seed=seed, faults={ANY_MODEL: faults})
    base = f"http://{host}:{port}"
    console.print(f"[bold]Upstream simulator[/bold] on {base}")
    console.print(
        f"OpenAI {base}/v1  ·  Anthropic {base}/v1/messages  ·  faults {base}/_sim/faults"
        "  ·  any API key works except ones starting with 'bad'"
    )
    uvicorn.run(build_simulator(state), host=host, port=port, log_level="warning", access_log=False)
