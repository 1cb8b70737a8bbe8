"""One response from a vendor: status and headers at once, the body as the connection reads it.

The body is buffered here, not in the connection, so a connection goes back to its pool the
moment its response is complete, even before the caller has read the body (most JSON answers
arrive whole in one read, headers and body together).
"""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from capstan.gateway.upstream_client.errors import ProtocolError

if TYPE_CHECKING:
    from capstan.gateway.upstream_client.connection import Connection

# A slow reader of a stream stops the socket's reads above this much buffered body, and
# resumes them below a quarter of it (backpressure to the vendor instead of memory growth).
HIGH_WATER = 256 * 1024


def body_decoder(encoding: str | None) -> zlib._Decompress | None:
    """A decompressor for the `content-encoding` the client accepts (gzip, deflate), None for
    identity; ProtocolError for one it never asked for. Codings are case-insensitive."""
    if encoding is not None:
        encoding = encoding.strip().lower()
    if encoding is None or encoding == "identity":
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(wbits=47)  # 32 + 15: a gzip or a zlib header, detected
    raise ProtocolError(f"the upstream answered in an encoding never asked for: {encoding}")


class UpstreamResponse:
    """`status`, `headers` (names in lower case, repeated fields joined by ", ") and the body:
    `read()` it whole, or take it as it comes with `chunks()` or `lines()`. `close()` gives up
    on the rest, closing the connection; a fully read response needs no closing."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_complete",
        "_connection",
        "_decoder",
        "_error",
        "_fields",
        "_headers",
        "_loop",
        "_waiter",
        "_whole",
        "status",
    )

    def __init__(
        self,
        status: int,
        fields: list[tuple[bytes, bytes]],
        connection: Connection,
        loop: asyncio.AbstractEventLoop,
        decoder: zlib._Decompress | None,
    ) -> None:
        self.status = status
        self._fields = fields
        self._headers: dict[str, str] | None = None
        self._connection: Connection | None = connection
        self._loop = loop
        self._decoder = decoder
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._complete = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._whole = False  # read() wants it all: no backpressure

    # What the connection calls.

    def feed(self, data: bytes) -> None:
        if self._decoder is not None:
            try:
                data = self._decoder.decompress(data)
            except zlib.error as exc:
                connection = self._connection  # `finish` forgets it
                self.finish(ProtocolError(f"the upstream's compressed body is corrupt: {exc}"))
                if connection is not None:
                    connection.abort()
                return
        if data:
            self._chunks.append(data)
            self._buffered += len(data)
            if self._buffered > HIGH_WATER and not self._whole and self._connection is not None:
                self._connection.pause_reading()
        self._wake()

    def finish(self, error: BaseException | None) -> None:
        """The body is complete (`error` None) or will never be (`error` says why)."""
        if self._complete:
            return
        if error is None and self._decoder is not None:
            if not self._decoder.eof:
                error = ProtocolError("the upstream's compressed body ends early")
            else:
                tail = self._decoder.flush()
                if tail:
                    self._chunks.append(tail)
                    self._buffered += len(tail)
        self._complete = True
        self._error = error
        self._connection = None
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # What the caller uses.

    async def read(self) -> bytes:
        """The whole (remaining) body; TransportError if it cannot be had."""
        self._whole = True
        if self._connection is not None:
            self._connection.resume_reading()
        while not self._complete:
            await self._wait()
        if self._error is not None:
            raise self._error
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        return data

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body in pieces as they arrive (as decoded, when it was compressed)."""
        chunks = self._chunks
        while True:
            if chunks:
                data = chunks.popleft()
                self._buffered -= len(data)
                connection = self._connection
                if connection is not None and self._buffered < HIGH_WATER // 4:
                    connection.resume_reading()
                yield data
            elif self._complete:
                if self._error is not None:
                    raise self._error
                return
            else:
                await self._wait()

    async def lines(self) -> AsyncIterator[bytes]:
        """The body line by line, each with its `\\n` (the last one may lack it)."""
        pending = b""
        async for data in self.chunks():
            if pending:
                data = pending + data
            start = 0
            end = data.find(b"\n")
            while end >= 0:
                yield data[start : end + 1]
                start = end + 1
                end = data.find(b"\n", start)
            pending = data[start:]
        if pending:
            yield pending

    def close(self) -> None:
        """Stop reading: an incomplete body's connection cannot be reused, so it is closed."""
        connection = self._connection
        if not self._complete:
            self.finish(ProtocolError("the response was closed before its end"))
        if connection is not None:
            connection.abort()

    @property
    def headers(self) -> dict[str, str]:
        """Built on first use: most answers are read without a look at their headers."""
        headers = self._headers
        if headers is None:
            headers = self._headers = {}
            for raw_name, raw_value in self._fields:
                name = raw_name.decode("latin-1").lower()
                value = raw_value.decode("latin-1")
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return headers

    async def _wait(self) -> None:
        waiter = self._loop.create_future()
        self._waiter = waiter
        await waiter
