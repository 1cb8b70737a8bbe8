"""The simulator as one Starlette app: every vendor's routes plus a small admin surface.

Admin routes (not part of any vendor's API):
- `PUT /_sim/faults` with `{"model": "gpt-4o" | "*", ...Faults fields}` sets a model's faults;
- `DELETE /_sim/faults` clears faults, the request log and the simulated prompt caches;
- `GET /_sim/faults` lists them; `GET /_sim/requests` returns the requests received, newest last,
  with credential headers removed;
- `GET /_sim/stats` counts what tests cannot see otherwise (streams the client abandoned).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from capstan.testing.simulator import (
    anthropic_wire,
    bedrock_wire,
    cohere_wire,
    gemini_wire,
    openai_wire,
)
from capstan.testing.simulator.state import ANY_MODEL, Faults, SimulatorState

VENDORS = (openai_wire, anthropic_wire, gemini_wire, cohere_wire, bedrock_wire)


def build_simulator(state: SimulatorState | None = None) -> Starlette:
    state = state or SimulatorState()
    routes: list[BaseRoute] = [
        Route("/_sim/faults", _faults_endpoint(state), methods=["GET", "PUT", "DELETE"]),
        Route("/_sim/requests", _requests_endpoint(state), methods=["GET"]),
        Route("/_sim/stats", _stats_endpoint(state), methods=["GET"]),
    ]
    for vendor in VENDORS:
        routes.extend(vendor.routes(state))
    app = Starlette(routes=routes)
    app.state.simulator = state
    return app


def _faults_endpoint(state: SimulatorState) -> Any:
    async def endpoint(request: Request) -> Response:
        if request.method == "DELETE":
            state.clear()
            return Response(status_code=204)
        if request.method == "PUT":
            try:
                data = orjson.loads(await request.body())
                faults = Faults.from_json(data)
            except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            state.set_faults(str(data.get("model", ANY_MODEL)), faults)
        return JSONResponse({model: f.as_json() for model, f in state.faults.items()})

    return endpoint


def _requests_endpoint(state: SimulatorState) -> Any:
    async def endpoint(_request: Request) -> Response:
        return JSONResponse(
            [{"path": r.path, "headers": r.headers, "body": r.body} for r in state.received]
        )

    return endpoint


def _stats_endpoint(state: SimulatorState) -> Any:
    async def endpoint(_request: Request) -> Response:
        return JSONResponse({"streams_abandoned": state.streams_abandoned})

    return endpoint
