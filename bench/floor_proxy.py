"""The floor for any Python gateway: a raw ASGI pass-through, uvicorn (uvloop, httptools, one
worker) in front, one shared aiohttp session behind. It reads the body, POSTs it upstream and
returns the bytes: no auth, no parsing, nothing a gateway could skip.

`python -m bench.floor_proxy UPSTREAM_URL PORT`
"""

from __future__ import annotations

import sys
from typing import Any

import aiohttp
import uvicorn


class FloorProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.http: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
                self.http = aiohttp.ClientSession(connector=connector)
                await send({"type": "lifespan.startup.complete"})
            if self.http is not None:
                await self.http.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert self.http is not None
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {"content-type": "application/json"}
        async with self.http.post(self.upstream + scope["path"], data=body, headers=headers) as up:
            payload = await up.read()
            kind = up.headers.get("content-type", "application/json").encode()
        await send(
            {
                "type": "http.response.start",
                "status": up.status,
                "headers": [(b"content-type", kind)],
            }
        )
        await send({"type": "http.response.body", "body": payload})


if __name__ == "__main__":
    upstream, port = sys.argv[1], int(sys.argv[2])
    uvicorn.run(
        FloorProxy(upstream),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        workers=1,
        log_level="warning",
        access_log=False,
    )
