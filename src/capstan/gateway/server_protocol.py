"""uvicorn's httptools protocol, sending a response's head and body in one write.

uvicorn writes the status line and headers of a response in one `transport.write` and its body
in another, so every small response costs two `write` system calls, and on loopback or a busy
host each one runs the kernel's whole TCP send path (on loopback, the peer's receive path too).
Under load the first of the two was the single most expensive line in the gateway's profile.
Here the head waits for the body when the body follows at once, which is what a JSON answer
does, and goes out alone on the loop's next turn otherwise (a stream still waiting for its
upstream, a HEAD request).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_HEAD_PREFIX = b"HTTP/"


class CoalescingTransport:
    """Wraps a transport: a response head is held until the next write (or the loop's next
    turn) and then written together with it. Everything else goes straight through."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif data.startswith(_HEAD_PREFIX) and data.endswith(b"\r\n\r\n"):
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:  # the rarely used rest of the transport API
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` on a `CoalescingTransport`; pass it as uvicorn's `http`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        wrapped = CoalescingTransport(transport, self.loop)
        super().connection_made(wrapped)  # type: ignore[arg-type]
