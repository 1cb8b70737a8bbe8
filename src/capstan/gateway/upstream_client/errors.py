"""What can go wrong between the gateway and a vendor below HTTP's status codes."""

from __future__ import annotations


class TransportError(Exception):
    """The exchange failed before a whole response arrived."""


class ConnectError(TransportError):
    """No connection could be opened (refused, unreachable, DNS, TLS handshake)."""


class ConnectionLost(TransportError):
    """The connection closed before the response was complete. `replayable` when it was a
    kept-alive connection that closed before a single byte of the answer came: the peer had
    closed it while idle, so it never saw the request and sending it again is safe."""

    def __init__(self, message: str, *, replayable: bool = False) -> None:
        super().__init__(message)
        self.replayable = replayable


class ProtocolError(TransportError):
    """The peer answered something that is not HTTP/1.1, or a body that cannot be decoded."""


class UpstreamTimeout(TransportError, TimeoutError):
    """Nothing arrived for the read timeout, or the connection took too long to open."""
