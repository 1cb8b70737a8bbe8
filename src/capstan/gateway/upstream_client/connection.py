"""One kept-alive connection to a vendor: sends a request, parses its response with httptools.

One exchange at a time (no pipelining). The read timeout is one timer per exchange that
re-arms itself lazily from the time of the last read, instead of a timer rescheduled on every
read.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

import httptools

from capstan.gateway.upstream_client.errors import (
    ConnectionLost,
    ProtocolError,
    TransportError,
    UpstreamTimeout,
)
from capstan.gateway.upstream_client.response import UpstreamResponse, body_decoder

if TYPE_CHECKING:
    from capstan.gateway.upstream_client.client import Origin


# content-length, content-encoding, transfer-encoding
_FRAMING_NAME_LENGTHS = frozenset({14, 16, 17})


class Connection(asyncio.Protocol):
    """An `asyncio.Protocol` that its `Origin` hands out for one exchange at a time."""

    __slots__ = (
        "_closed",
        "_encoding",
        "_fields",
        "_framed",
        "_informational",
        "_last_read",
        "_loop",
        "_origin",
        "_parser",
        "_paused",
        "_ready",
        "_received",
        "_response",
        "_timeout_s",
        "_timer",
        "_transport",
        "_until_close",
        "exchanges",
        "idle_since",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, origin: Origin) -> None:
        self._loop = loop
        self._origin = origin
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._fields: list[tuple[bytes, bytes]] = []
        self._encoding: bytes | None = None  # the response's content-encoding, as sent
        self._framed = (
            False  # a content-length or chunked: the body does not end with the connection
        )
        self._ready: asyncio.Future[UpstreamResponse] | None = None
        self._response: UpstreamResponse | None = None
        self._received = False
        self._informational = False
        self._until_close = False
        self._paused = False
        self._closed = False
        self._timeout_s = 0.0
        self._last_read = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.exchanges = 0
        self.idle_since = 0.0

    # The exchange.

    def send(self, request: bytes, timeout_s: float) -> asyncio.Future[UpstreamResponse]:
        """Write `request`; the future resolves with the response once its headers are in
        (TransportError if they never come). The body follows on the response."""
        assert self._transport is not None
        assert self._ready is None
        assert self._response is None
        ready: asyncio.Future[UpstreamResponse] = self._loop.create_future()
        self._ready = ready
        self._received = False
        self.exchanges += 1
        self._timeout_s = timeout_s
        self._last_read = now = self._loop.time()
        self._timer = self._loop.call_at(now + timeout_s, self._check_timeout)
        self._transport.write(request)
        return ready

    @property
    def usable(self) -> bool:
        transport = self._transport
        return not self._closed and transport is not None and not transport.is_closing()

    def abort(self) -> None:
        """Close now; whatever exchange is under way fails."""
        if not self._closed:
            self._closed = True
            self._fail(ConnectionLost("the connection was closed"))
            if self._transport is not None:
                self._transport.abort()
            self._origin.forget(self)

    def pause_reading(self) -> None:
        if not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._paused and self._transport is not None:
            self._paused = False
            self._last_read = self._loop.time()  # the reader was slow, not the vendor
            self._transport.resume_reading()

    # asyncio's callbacks.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        if self._ready is None and self._response is None:
            self.abort()  # bytes nobody asked for: the connection cannot be trusted any more
            return
        self._last_read = self._loop.time()
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("the upstream switched protocols"))
            self.abort()
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"the upstream answered malformed HTTP: {exc}"))
            self.abort()

    def eof_received(self) -> bool:
        return False  # close the transport; `connection_lost` tells the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._origin.forget(self)
        response = self._response
        if response is not None and self._until_close and exc is None:
            # A body delimited by the end of the connection: this is its end.
            self._response = None
            self._stop_timer()
            response.finish(None)
            return
        reused = self.exchanges > 1 and not self._received
        why = "the upstream closed the connection"
        if exc is not None:
            why += f" ({type(exc).__name__})"
        self._fail(ConnectionLost(why, replayable=reused and self._ready is not None))

    # httptools' callbacks.

    def on_message_begin(self) -> None:
        self._fields = []
        self._encoding = None
        self._framed = False

    def on_header(self, name: bytes, value: bytes) -> None:
        """Kept as they came (the response decodes them only if someone looks); the three
        fields the body's framing and coding depend on are picked out here, by their length
        first: a vendor's answer carries twenty-odd fields, and decoding them all on every
        call cost about 9 µs."""
        self._fields.append((name, value))
        if len(name) in _FRAMING_NAME_LENGTHS:
            lowered = name.lower()
            if lowered == b"content-encoding":
                encoding = self._encoding
                self._encoding = value if encoding is None else encoding + b", " + value
            elif lowered == b"content-length" or (
                lowered == b"transfer-encoding" and b"chunked" in value.lower()
            ):
                self._framed = True

    def on_headers_complete(self) -> None:
        if self._ready is None:  # a second answer to one request
            self.abort()
            return
        status = self._parser.get_status_code()
        if status < 200:  # 1xx: an interim answer, the real one follows
            self._informational = True
            return
        encoding = self._encoding
        try:
            decoder = body_decoder(None if encoding is None else encoding.decode("latin-1"))
        except ProtocolError as exc:
            self._fail(exc)
            self.abort()
            return
        self._until_close = not self._framed
        response = UpstreamResponse(status, self._fields, self, self._loop, decoder)
        self._response = response
        ready = self._ready
        self._ready = None
        if ready is not None and not ready.done():
            ready.set_result(response)

    def on_body(self, body: bytes) -> None:
        response = self._response
        if response is not None:
            response.feed(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        response = self._response
        self._response = None
        self._stop_timer()
        keep_alive = self._parser.should_keep_alive()
        if response is not None:
            response.finish(None)
        if self._paused:
            self.resume_reading()
        if keep_alive and not self._closed:
            self.idle_since = self._loop.time()
            self._origin.release(self)
        else:
            self.abort()

    # The rest.

    def _check_timeout(self) -> None:
        self._timer = None
        now = self._loop.time()
        if self._paused:  # the reader is slow, not the vendor: look again a timeout later
            self._timer = self._loop.call_at(now + self._timeout_s, self._check_timeout)
            return
        due = self._last_read + self._timeout_s
        if now < due:
            self._timer = self._loop.call_at(max(due, now + 0.001), self._check_timeout)
            return
        self._fail(UpstreamTimeout(f"the upstream sent nothing for {self._timeout_s:g} s"))
        self.abort()

    def _stop_timer(self) -> None:
        timer = self._timer
        if timer is not None:
            self._timer = None
            timer.cancel()

    def _fail(self, error: TransportError) -> None:
        """End the exchange under way, if any, with `error`."""
        self._stop_timer()
        ready, response = self._ready, self._response
        self._ready = self._response = None
        if ready is not None and not ready.done():
            ready.set_exception(error)
        if response is not None:
            response.finish(error)
