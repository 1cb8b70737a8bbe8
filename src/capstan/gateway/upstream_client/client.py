"""`UpstreamClient`: POST to a vendor over a kept-alive connection from the origin's pool.

Connections are opened on demand (no limit: the gateway's per-deployment concurrency limits
bound them), kept after a complete response when the vendor allows it, reused newest first,
and dropped after `idle_ttl_s` unused. A request on a kept-alive connection that closed before a
byte of the answer came is sent once more on a fresh connection: almost always the vendor had
closed the idle connection as the request went out, and never saw it. The attempt machinery
would retry a lost connection anyway (it is transient); doing it here spares that retry its
backoff, and the deployment's breaker a failure that says nothing about the vendor's health.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote, urlsplit

import aiohappyeyeballs

from capstan.gateway.upstream_client.connection import Connection
from capstan.gateway.upstream_client.errors import ConnectError, ConnectionLost, UpstreamTimeout
from capstan.gateway.upstream_client.response import UpstreamResponse

USER_AGENT = "capstan"
ACCEPT_ENCODING = "gzip, deflate"
HAPPY_EYEBALLS_DELAY_S = 0.25  # RFC 8305's recommended connection attempt delay
# What `quote` leaves alone in a request target: RFC 3986's reserved and unreserved characters
# and `%` (a target the adapter already percent-encoded stays as it is).
_TARGET_SAFE = "!#$%&'()*+,/:;=?@[]~"


@dataclass(frozen=True, slots=True)
class Target:
    """Where a URL's requests go: the origin's pool key and the request line with its host."""

    origin: tuple[str, str, int]  # scheme, host, port: the pool it draws from
    head: str  # "POST <target> HTTP/1.1\r\nhost: <host>\r\n"


@lru_cache(maxsize=1024)
def target_of(url: str) -> Target:
    """ValueError for anything but an absolute http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    default = 443 if parts.scheme == "https" else 80
    port = parts.port or default
    name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    host = name if port == default else f"{name}:{port}"
    target = quote(parts.path or "/", safe=_TARGET_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_TARGET_SAFE)
    origin = (parts.scheme, parts.hostname, port)
    return Target(origin, f"POST {target} HTTP/1.1\r\nhost: {host}\r\n")


def request_bytes(target: Target, headers: Mapping[str, str], body: bytes) -> bytes:
    """The request on the wire. ValueError for a header that holds a line break (a header
    passed through from a client must not be able to add headers of its own)."""
    fields = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    count = len(headers)
    if fields.count("\n") != count or fields.count("\r") != count:
        raise ValueError("a request header holds a line break")
    names = {name.lower() for name in headers}
    if "user-agent" not in names:
        fields += f"user-agent: {USER_AGENT}\r\n"
    if "accept-encoding" not in names:
        fields += f"accept-encoding: {ACCEPT_ENCODING}\r\n"
    head = f"{target.head}{fields}content-length: {len(body)}\r\n\r\n"
    return head.encode() + body


class Origin:
    """The connections to one scheme://host:port."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        target: Target,
        tls: ssl.SSLContext | None,
        *,
        idle_ttl_s: float,
        max_idle: int,
    ) -> None:
        self._loop = loop
        _, self._host, self._port = target.origin
        self._tls = tls
        self._idle_ttl_s = idle_ttl_s
        self._max_idle = max_idle
        self._idle: list[Connection] = []  # newest last
        self._open: set[Connection] = set()

    def idle_connection(self) -> Connection | None:
        idle = self._idle
        if not idle:
            return None
        oldest_kept = self._loop.time() - self._idle_ttl_s
        while idle:
            connection = idle.pop()
            if connection.usable and connection.idle_since > oldest_kept:
                return connection
            connection.abort()
        return None

    async def connect(self, timeout_s: float) -> Connection:
        """A new connection; where the name has IPv6 and IPv4 addresses, attempts to each start
        `HAPPY_EYEBALLS_DELAY_S` apart (RFC 8305), so a network that drops IPv6 costs a quarter
        second, not the whole connect timeout. (uvloop's `create_connection` has no such
        option, hence the socket connected first and handed over.)"""
        loop = self._loop
        where = f"{self._host}:{self._port}"
        try:
            async with asyncio.timeout(timeout_s):
                addresses = await loop.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
                sock = await aiohappyeyeballs.start_connection(
                    addresses, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY_S, interleave=1, loop=loop
                )
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    _, connection = await loop.create_connection(
                        lambda: Connection(loop, self),
                        sock=sock,
                        ssl=self._tls,
                        server_hostname=self._host if self._tls is not None else None,
                    )
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError as exc:
            raise UpstreamTimeout(f"could not connect to {where} within {timeout_s:g} s") from exc
        except OSError as exc:  # ssl.SSLError and socket.gaierror are OSErrors
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise ConnectError(f"could not connect to {where}: {reason}") from exc
        self._open.add(connection)
        return connection

    def release(self, connection: Connection) -> None:
        if len(self._idle) < self._max_idle:
            self._idle.append(connection)
        else:
            connection.abort()

    def forget(self, connection: Connection) -> None:
        self._open.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)

    def close(self) -> None:
        for connection in list(self._open):
            connection.abort()


class UpstreamClient:
    """Create it on the loop that will use it; `close()` it when done."""

    def __init__(
        self,
        *,
        connect_timeout_s: float = 10.0,
        idle_ttl_s: float = 15.0,
        max_idle_per_origin: int = 256,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        # Kept, not looked up per call: `asyncio.get_running_loop()` costs a getpid() each time.
        self._loop = asyncio.get_running_loop()
        self._connect_timeout_s = connect_timeout_s
        self._idle_ttl_s = idle_ttl_s
        self._max_idle = max_idle_per_origin
        self._tls = tls
        self._origins: dict[tuple[str, str, int], Origin] = {}

    async def post(
        self, url: str, *, headers: Mapping[str, str], body: bytes, timeout_s: float
    ) -> UpstreamResponse:
        """The vendor's response once its headers are in; the body follows on it.

        `timeout_s` bounds each wait for data (the headers, then every read of the body).
        Raises TransportError (UpstreamTimeout, ConnectError, ConnectionLost, ProtocolError)
        and ValueError for a URL or header that cannot be sent."""
        target = target_of(url)
        request = request_bytes(target, headers, body)
        origin = self._origins.get(target.origin)
        if origin is None:
            origin = self._origin(target)
        connection = origin.idle_connection()
        for fresh in (connection is None, True):
            if fresh:
                connection = await origin.connect(self._connect_timeout_s)
            assert connection is not None
            ready = connection.send(request, timeout_s)
            try:
                return await ready
            except ConnectionLost as exc:
                if fresh or not exc.replayable:
                    raise
            except BaseException:  # cancelled, or failed: the exchange is half done
                connection.abort()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _origin(self, target: Target) -> Origin:
        tls = None
        if target.origin[0] == "https":
            tls = self._tls or _default_tls()
        origin = Origin(
            self._loop, target, tls, idle_ttl_s=self._idle_ttl_s, max_idle=self._max_idle
        )
        self._origins[target.origin] = origin
        return origin

    async def close(self) -> None:
        for origin in self._origins.values():
            origin.close()
        self._origins.clear()
        await asyncio.sleep(0)  # let the transports' close callbacks run


@lru_cache(maxsize=1)
def _default_tls() -> ssl.SSLContext:
    """Certificates verified against the system's store (or `SSL_CERT_FILE`), HTTP/1.1 by ALPN."""
    context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    return context
