"""An httpx transport that runs an ASGI app in this process, lifespan included.

The CLI's local mode sends its requests through this, so a local command goes through exactly
the code a server runs. The app lives on an event loop in a helper thread (an anyio blocking
portal); each request is handed over to it and its response read back in full.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastapi import FastAPI


class InProcessTransport(httpx.BaseTransport):
    def __init__(self, app: FastAPI, portal: BlockingPortal) -> None:
        self.portal = portal
        self.asgi = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        return self.portal.call(self._forward, request, body)

    async def _forward(self, request: httpx.Request, body: bytes) -> httpx.Response:
        forwarded = httpx.Request(
            request.method, request.url, headers=request.headers, content=body
        )
        response = await self.asgi.handle_async_request(forwarded)
        content = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
        return httpx.Response(response.status_code, headers=response.headers, content=content)


@contextmanager
def in_process_client(
    app: FastAPI, base_url: str = "http://capstan.local"
) -> Iterator[httpx.Client]:
    """A client for `app`, with the app's startup run before and its shutdown after."""
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(app.router.lifespan_context(app)),
        httpx.Client(transport=InProcessTransport(app, portal), base_url=base_url) as client,
    ):
        yield client
