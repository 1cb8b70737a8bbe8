"""The data plane's HTTP/1.1 client for model vendors.

A keep-alive connection pool per origin on asyncio transports, with llhttp (through httptools,
the parser uvicorn uses) reading the responses. It does what the adapters need and nothing
else: POST a body, read the status and headers, read the body whole or as it arrives. Measured
as a pass-through on this project's benchmark machine, aiohttp's client spent about 100 µs of
the event loop's time per call and this one about 10 µs (docs/benchmarks.md), on a path every
model call takes.
"""

from capstan.gateway.upstream_client.client import UpstreamClient
from capstan.gateway.upstream_client.errors import (
    ConnectError,
    ConnectionLost,
    ProtocolError,
    TransportError,
    UpstreamTimeout,
)
from capstan.gateway.upstream_client.response import UpstreamResponse

__all__ = [
    "ConnectError",
    "ConnectionLost",
    "ProtocolError",
    "TransportError",
    "UpstreamClient",
    "UpstreamResponse",
    "UpstreamTimeout",
]
