"""The ASGI app a server runs: data-plane calls go straight to their endpoints; everything else
(the control API, health, docs, lifespan) goes to the FastAPI app.

Measured under load, FastAPI's middleware stack and route matching (every control-API route is
tried before the data plane's) cost about a quarter of a model call's time in the gateway. The
data-plane endpoints need neither: they parse their own bodies and write their own errors in
their dialect. So an exact (path, method) lookup sends a model call to its endpoint; the one
parametrised path (`/v1/models/{id}`) goes through a small Starlette router.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import orjson
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router
from starlette.types import Receive, Scope, Send

from capstan.gateway.edge import JSONBytes
from capstan.gateway.errors import GatewayError

DATA_PLANE_PREFIXES = ("/v1/", "/v2/")  # OpenAI/Anthropic, and the Open Inference Protocol
Endpoint = Callable[[Request], Awaitable[Response]]


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    error = GatewayError(404, f"no such endpoint: {scope['path']}", code="unknown_url")
    response = Response(
        orjson.dumps(error.openai_body()), status_code=404, media_type="application/json"
    )
    await response(scope, receive, send)


class DataPlaneFirst:
    """Dispatches a request to the data plane or to `control`; `state` is the control app's,
    so `request.app.state` reads the same services from either side."""

    def __init__(self, control: FastAPI, routes: Sequence[Route]) -> None:
        self.control = control
        self.state = control.state
        self._exact: dict[tuple[str, str], Endpoint] = {}
        parametrised: list[Route] = []
        for route in routes:
            if route.param_convertors:
                parametrised.append(route)
                continue
            for method in route.methods or ():
                self._exact[(route.path, method)] = route.endpoint
        self._router = Router(routes=parametrised, default=_not_found)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self._exact.get((scope["path"], scope["method"]))
            if endpoint is not None:
                scope["app"] = self.control
                response = await endpoint(Request(scope, receive, send))
                if type(response) is JSONBytes:  # most calls: sent here, a frame less
                    start = "http.response.start"
                    status, headers = response.status_code, response.raw_headers
                    await send({"type": start, "status": status, "headers": headers})
                    await send({"type": "http.response.body", "body": response.body})
                else:
                    await response(scope, receive, send)
                return
            if scope["path"].startswith(DATA_PLANE_PREFIXES):
                scope["app"] = self.control
                await self._router(scope, receive, send)
                return
        await self.control(scope, receive, send)
