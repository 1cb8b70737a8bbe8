"""Running provider calls from synchronous tests: each call gets its own upstream client and
event loop, as the gateway's data plane gives each adapter its live `UpstreamClient`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from capstan.gateway.upstream_client import UpstreamClient

T = TypeVar("T")


def with_session(call: Callable[[UpstreamClient], Awaitable[T]]) -> T:
    async def main() -> T:
        http = UpstreamClient()
        try:
            return await call(http)
        finally:
            await http.close()

    return asyncio.run(main())
