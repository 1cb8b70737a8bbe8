"""Running provider calls from synchronous tests: each call gets its own aiohttp session and
event loop, as the gateway's data plane gives each adapter a live `ClientSession`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp

T = TypeVar("T")


def with_session(call: Callable[[aiohttp.ClientSession], Awaitable[T]]) -> T:
    async def main() -> T:
        async with aiohttp.ClientSession() as http:
            return await call(http)

    return asyncio.run(main())
