"""The HTTP protocol `capstan serve` runs: a response's head and body leave in one write, and
every kind of response still arrives whole."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from capstan.gateway.server_protocol import CoalescingTransport
from tests.servers import RunningServer, start_asgi

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class RecordingTransport:
    """Stands in for the socket's transport: what was written, in which calls."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    running = asyncio.new_event_loop()
    yield running
    running.close()


def _wrapped(loop: asyncio.AbstractEventLoop) -> tuple[CoalescingTransport, RecordingTransport]:
    inner = RecordingTransport()
    return CoalescingTransport(inner, loop), inner  # type: ignore[arg-type]


def _turn(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0))


def test_a_head_followed_by_its_body_is_one_write(loop: asyncio.AbstractEventLoop) -> None:
    wrapped, inner = _wrapped(loop)
    wrapped.write(HEAD)
    wrapped.write(b"ok")
    assert inner.writes == [HEAD + b"ok"]


def test_a_head_with_no_body_yet_leaves_on_the_next_turn(loop: asyncio.AbstractEventLoop) -> None:
    wrapped, inner = _wrapped(loop)
    wrapped.write(HEAD)
    assert inner.writes == []
    _turn(loop)
    assert inner.writes == [HEAD]
    wrapped.write(b"ok")
    assert inner.writes == [HEAD, b"ok"]


def test_closing_sends_a_held_head_first(loop: asyncio.AbstractEventLoop) -> None:
    wrapped, inner = _wrapped(loop)
    wrapped.write(HEAD)
    wrapped.close()
    assert inner.writes == [HEAD]
    assert inner.closed


def test_body_writes_go_straight_through(loop: asyncio.AbstractEventLoop) -> None:
    wrapped, inner = _wrapped(loop)
    wrapped.write(b"chunk one")
    wrapped.write(b"chunk two")
    assert inner.writes == [b"chunk one", b"chunk two"]


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for piece in (b"one ", b"two ", b"three"):
            await asyncio.sleep(0.01)
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    body = b'{"ok":true}'
    headers = [(b"content-length", str(len(body)).encode()), (b"x-kind", b"plain")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = start_asgi(_app)
    yield running
    running.stop()


def test_plain_responses_arrive_whole_on_a_kept_alive_connection(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        for _ in range(20):
            response = client.get("/")
            assert response.json() == {"ok": True}
            assert response.headers["x-kind"] == "plain"


def test_a_streamed_response_arrives_whole(server: RunningServer) -> None:
    with httpx.stream("GET", f"{server.url}/stream") as response:
        assert b"".join(response.iter_bytes()) == b"one two three"


def test_a_head_request_gets_its_headers(server: RunningServer) -> None:
    response = httpx.head(server.url)
    assert response.status_code == 200
    assert response.headers["content-length"] == "11"


def test_pipelined_requests_are_answered_in_order(server: RunningServer) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    request = f"GET / HTTP/1.1\r\nhost: {host}\r\n\r\n".encode()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request * 3)
        received = b""
        while received.count(b'{"ok":true}') < 3:
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection"
            received += chunk
    assert received.count(b"HTTP/1.1 200 OK") == 3
