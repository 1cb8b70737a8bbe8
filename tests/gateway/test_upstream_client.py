"""The upstream HTTP/1.1 client against real servers on loopback: the request on the wire, the
response's status, headers and body (content-length, chunked, compressed, close-delimited, after
1xx), which connections are reused, read timeouts, lost connections, cancellation, backpressure
and TLS. Each server is a scripted raw-TCP one in the client's own event loop, and every scenario
runs on asyncio's loop and on uvloop (the one `capstan serve` runs)."""

from __future__ import annotations

import asyncio
import gzip
import os
import re
import socket
import ssl
import zlib
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from capstan.gateway.upstream_client import (
    ConnectError,
    ConnectionLost,
    ProtocolError,
    UpstreamClient,
    UpstreamResponse,
    UpstreamTimeout,
)
from capstan.gateway.upstream_client.client import target_of
from tests.certificates import Certificate, self_signed

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter
Handler = Callable[[Reader, Writer], Awaitable[None]]
Loop = Callable[[], asyncio.AbstractEventLoop]
Scenario = Callable[["Server", UpstreamClient], Coroutine[Any, Any, None]]

TIMEOUT_S = 0.2  # the read timeout where one is under test
CHUNKED = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
BIG = os.urandom(3 * 1024 * 1024)
GZIPPED = gzip.compress(os.urandom(1000))


@pytest.fixture(autouse=True)
def _no_faults() -> None:
    """Loopback servers only: no gateway to start or clean after (overrides the package's)."""


@pytest.fixture(params=["asyncio", "uvloop"])
def loop(request: pytest.FixtureRequest) -> Loop:
    """How a scenario's event loop is made: each runs on asyncio's loop and on uvloop."""
    return uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop


class Server:
    """A scripted server on 127.0.0.1: runs `handler` on each connection, and counts them."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None) -> None:
        self.handler, self.tls, self.connections, self.port = handler, tls, 0, 0

    def url(self, target: str = "/v1/chat") -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{target}"

    async def serve(self, reader: Reader, writer: Writer) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went away, or the scenario ended (3.11 would log a cancellation)
        finally:
            writer.close()


def serving(
    loop: Loop,
    handler: Handler,
    *,
    server_tls: ssl.SSLContext | None = None,
    client_tls: ssl.SSLContext | None = None,
) -> Callable[[Scenario], None]:
    """Runs the scenario it decorates at once, on a loop of its own (5 s at most): with a server
    running `handler`, and a client made in that loop and closed after it."""

    def run(scenario: Scenario) -> None:
        async def main() -> None:
            server = Server(handler, server_tls)
            listening = await asyncio.start_server(server.serve, "127.0.0.1", 0, ssl=server_tls)
            server.port = listening.sockets[0].getsockname()[1]
            client = UpstreamClient(tls=client_tls)
            try:
                await asyncio.wait_for(scenario(server, client), 5)
            finally:
                await client.close()
                listening.close()

        with asyncio.Runner(loop_factory=loop) as runner:
            runner.run(main())

    return run


async def read_request(reader: Reader) -> bytes:
    """One whole request, head and body; b"" when the client closed the connection instead."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return b""
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    return head + await reader.readexactly(int(length[1]) if length else 0)


def response(body: bytes = b"ok", *fields: str, status: str = "200 OK") -> bytes:
    head = "".join(f"{field}\r\n" for field in fields)
    return f"HTTP/1.1 {status}\r\n{head}content-length: {len(body)}\r\n\r\n".encode() + body


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def keep_answering(reader: Reader, writer: Writer) -> None:
    """A well-behaved server: "ok" to every request, the connection kept alive."""
    while await read_request(reader):
        writer.write(response(b"ok"))


def answering_once(*parts: bytes, pause_s: float = 0.0, then_close: bool = False) -> Handler:
    """Reads one request and writes `parts`, `pause_s` apart; then closes or holds on."""

    async def handler(reader: Reader, writer: Writer) -> None:
        await read_request(reader)
        for index, part in enumerate(parts):
            if index and pause_s:
                await asyncio.sleep(pause_s)
            writer.write(part)
            await writer.drain()
        if not then_close:
            await reader.read()  # until the client goes away

    return handler


def recording(requests: list[bytes], answer: bytes) -> Handler:
    """Keeps each request as it came and answers `answer` to it."""

    async def handler(reader: Reader, writer: Writer) -> None:
        while request := await read_request(reader):
            requests.append(request)
            writer.write(answer)

    return handler


def first_until_closed(closed: asyncio.Event, *parts: bytes) -> Handler:
    """The first connection writes `parts` to its request, then sets `closed` when the client
    closes it; the next ones keep answering."""

    async def handler(reader: Reader, writer: Writer) -> None:
        if closed.is_set():
            return await keep_answering(reader, writer)
        await read_request(reader)
        writer.writelines(parts)
        await reader.read()
        closed.set()

    return handler


async def post(client: UpstreamClient, url: str, timeout_s: float = 2.0) -> UpstreamResponse:
    return await client.post(url, headers={}, body=b"{}", timeout_s=timeout_s)


async def fetch(client: UpstreamClient, url: str, timeout_s: float = 2.0) -> bytes:
    return await (await post(client, url, timeout_s)).read()


def test_status_headers_and_body_come_back_and_the_request_is_as_expected(loop: Loop) -> None:
    requests: list[bytes] = []
    fields = ("Content-Type: application/json", "X-Trace: a", "x-trace: b")

    @serving(loop, recording(requests, response(b'{"id":1}', *fields, status="201 Created")))
    async def scenario(server: Server, client: UpstreamClient) -> None:
        answer = await client.post(
            server.url("/v1/chat?api-version=2024-10-21"),
            headers={"Authorization": "Bearer sk-1", "Content-Type": "application/json"},
            body=b'{"a":1}',
            timeout_s=2.0,
        )
        assert (answer.status, await answer.read()) == (201, b'{"id":1}')
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["x-trace"] == "a, b"
        head, _, body = requests[0].partition(b"\r\n\r\n")
        line, *sent = head.decode().split("\r\n")
        assert line == "POST /v1/chat?api-version=2024-10-21 HTTP/1.1"
        assert sorted(sent) == [
            "Authorization: Bearer sk-1",
            "Content-Type: application/json",
            "accept-encoding: gzip, deflate",
            "content-length: 7",
            f"host: 127.0.0.1:{server.port}",
            "user-agent: capstan",
        ]
        assert body == b'{"a":1}'


def test_the_callers_user_agent_and_accept_encoding_replace_the_defaults(loop: Loop) -> None:
    requests: list[bytes] = []

    @serving(loop, recording(requests, response()))
    async def scenario(server: Server, client: UpstreamClient) -> None:
        headers = {"User-Agent": "sdk/1.0", "ACCEPT-ENCODING": "identity"}
        await (await client.post(server.url(), headers=headers, body=b"", timeout_s=2)).read()
        sent = requests[0].decode().lower().split("\r\n")
        assert [field for field in sent if field.startswith(("user-agent", "accept-enc"))] == [
            "user-agent: sdk/1.0",
            "accept-encoding: identity",
        ]


def test_the_host_header_names_the_port_only_when_it_is_not_the_schemes_default() -> None:
    assert "\r\nhost: api.example.com\r\n" in target_of("http://api.example.com/v1").head
    assert "\r\nhost: api.example.com\r\n" in target_of("https://api.example.com:443/v1").head
    assert "\r\nhost: api.example.com:80\r\n" in target_of("https://api.example.com:80/v1").head
    assert "\r\nhost: [::1]:8080\r\n" in target_of("http://[::1]:8080/v1").head


def test_a_second_request_reuses_the_kept_alive_connection(loop: Loop) -> None:
    @serving(loop, keep_answering)
    async def scenario(server: Server, client: UpstreamClient) -> None:
        assert await fetch(client, server.url()) == b"ok"
        assert await fetch(client, server.url()) == b"ok"
        assert server.connections == 1


def test_a_connection_the_server_said_it_would_close_is_not_reused(loop: Loop) -> None:
    # The server says so but keeps the connection open: only the client's choice is tested.
    @serving(loop, recording([], response(b"ok", "connection: close")))
    async def scenario(server: Server, client: UpstreamClient) -> None:
        assert await fetch(client, server.url()) == b"ok"
        assert await fetch(client, server.url()) == b"ok"
        assert server.connections == 2


def test_a_connection_that_answers_twice_to_one_request_is_not_reused(loop: Loop) -> None:
    # The second answer arrives with the first one: nobody asked for it, so the connection
    # cannot be trusted to pair the next request with its own answer.
    @serving(loop, recording([], response(b"ok") + response(b"unasked")))
    async def scenario(server: Server, client: UpstreamClient) -> None:
        assert await fetch(client, server.url()) == b"ok"
        assert await fetch(client, server.url()) == b"ok"
        assert server.connections == 2


def test_bytes_sent_on_an_idle_connection_close_it(loop: Loop) -> None:
    async def then_chatter(reader: Reader, writer: Writer) -> None:
        while await read_request(reader):
            writer.write(response(b"ok"))
            await asyncio.sleep(0.02)
            writer.write(b"HTTP/1.1 200 OK\r\n")

    @serving(loop, then_chatter)
    async def scenario(server: Server, client: UpstreamClient) -> None:
        assert await fetch(client, server.url()) == b"ok"
        await asyncio.sleep(0.1)
        assert await fetch(client, server.url()) == b"ok"
        assert server.connections == 2


def test_a_chunked_body_is_read_whole(loop: Loop) -> None:
    parts = (CHUNKED + chunk(b"hello"), chunk(b" ") + chunk(b"world"), b"0\r\n\r\n")

    @serving(loop, answering_once(*parts, pause_s=0.01))
    async def scenario(server: Server, client: UpstreamClient) -> None:
        assert await fetch(client, server.url()) == b"hello world"


def test_lines_are_whole_even_when_a_line_spans_two_chunks(loop: Loop) -> None:
    parts = (CHUNKED + chunk(b"data: hel"), chunk(b"lo\n\ndata: [DONE]\n\n") + b"0\r\n\r\n")

    @serving(loop, answering_once(*parts, pause_s=0.05))
    async def scenario(server: Server, client: UpstreamClient) -> None:
        lines = [line async for line in (await post(client, server.url())).lines()]
        assert lines == [b"data: hello\n", b"\n", b"data: [DONE]\n", b"\n"]


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("GZIP", gzip.compress)],
    ids=["gzip", "deflate", "gzip-in-capitals"],
)
def test_a_compressed_body_is_decoded(
    loop: Loop, encoding: str, compress: Callable[[bytes], bytes]
) -> None:
    original = b'{"choices": []}' * 100
    answer = response(compress(original), f"content-encoding: {encoding}")

    @serving(loop, answering_once(answer))
    async def scenario(server: Server, client: UpstreamClient) -> None:
        assert await fetch(client, server.url()) == original


@pytest.mark.parametrize(
    "answer",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        response(b"\x8b\x00", "content-encoding: br"),
        response(GZIPPED[: len(GZIPPED) // 2], "content-encoding: gzip"),
    ],
    ids=["not-http", "an-encoding-never-asked-for", "a-truncated-gzip-body"],
)
def test_an_answer_that_is_not_http_or_cannot_be_decoded_is_a_protocol_error(
    loop: Loop, answer: bytes
) -> None:
    @serving(loop, answering_once(answer))
    async def scenario(server: Server, client: UpstreamClient) -> None:
        with pytest.raises(ProtocolError):
            await fetch(client, server.url())


def test_a_corrupt_compressed_body_fails_and_closes_its_connection(loop: Loop) -> None:
    closed = asyncio.Event()
    head = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n"

    @serving(loop, first_until_closed(closed, head + chunk(b"not gzip at all")))
    async def scenario(server: Server, client: UpstreamClient) -> None:
        with pytest.raises(ProtocolError):
            await fetch(client, server.url())
        await asyncio.wait_for(closed.wait(), 1)  # not left to stream on unread


def test_a_body_that_ends_with_the_connection_is_read_whole(loop: Loop) -> None:
    parts = (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nfirst, ", b"then the rest")

    @serving(loop, answering_once(*parts, pause_s=0.02, then_close=True))
    async def scenario(server: Server, client: UpstreamClient) -> None:
        assert await fetch(client, server.url()) == b"first, then the rest"


def test_a_server_that_never_answers_times_out_after_the_read_timeout(loop: Loop) -> None:
    @serving(loop, answering_once())
    async def scenario(server: Server, client: UpstreamClient) -> None:
        started = asyncio.get_running_loop().time()
        with pytest.raises(UpstreamTimeout) as raised:
            await post(client, server.url(), TIMEOUT_S)
        assert TIMEOUT_S * 0.9 <= asyncio.get_running_loop().time() - started < TIMEOUT_S + 0.5
        assert isinstance(raised.value, TimeoutError)


def test_a_body_that_stalls_times_out_while_it_is_read(loop: Loop) -> None:
    @serving(loop, answering_once(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"))
    async def scenario(server: Server, client: UpstreamClient) -> None:
        answer = await post(client, server.url(), TIMEOUT_S)
        with pytest.raises(UpstreamTimeout):
            await answer.read()


def test_a_body_that_keeps_trickling_in_does_not_time_out(loop: Loop) -> None:
    parts = (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n", *[b"x"] * 10)

    @serving(loop, answering_once(*parts, pause_s=0.05))
    async def scenario(server: Server, client: UpstreamClient) -> None:
        assert await fetch(client, server.url(), TIMEOUT_S) == b"x" * 10  # in about 0.5 s


def test_a_port_nobody_listens_on_is_a_connect_error(loop: Loop) -> None:
    @serving(loop, keep_answering)
    async def scenario(server: Server, client: UpstreamClient) -> None:
        with socket.socket() as bound_but_not_listening:
            bound_but_not_listening.bind(("127.0.0.1", 0))
            port = bound_but_not_listening.getsockname()[1]
            with pytest.raises(ConnectError):
                await post(client, f"http://127.0.0.1:{port}/v1/chat")


def test_a_kept_alive_connection_closed_while_idle_is_replaced_by_a_new_one(loop: Loop) -> None:
    @serving(loop, answering_once(response(), then_close=True))
    async def scenario(server: Server, client: UpstreamClient) -> None:
        assert await fetch(client, server.url()) == b"ok"
        await asyncio.sleep(0.05)  # the server's close arrives
        assert await fetch(client, server.url()) == b"ok"
        assert server.connections == 2


def test_a_request_a_kept_alive_connection_drops_unanswered_is_sent_again(loop: Loop) -> None:
    attempts: list[bytes] = []

    async def dropping_the_second_request(reader: Reader, writer: Writer) -> None:
        attempts.append(await read_request(reader))
        writer.write(response(b"first"))
        attempts.append(await read_request(reader))  # then closes without a word

    @serving(loop, dropping_the_second_request)
    async def scenario(server: Server, client: UpstreamClient) -> None:
        assert await fetch(client, server.url()) == b"first"
        assert await fetch(client, server.url()) == b"first"
        assert (server.connections, len(attempts)) == (2, 3)


def test_a_new_connection_closed_without_an_answer_is_lost_not_retried(loop: Loop) -> None:
    @serving(loop, answering_once(then_close=True))
    async def scenario(server: Server, client: UpstreamClient) -> None:
        with pytest.raises(ConnectionLost):
            await post(client, server.url())
        await asyncio.sleep(0.05)
        assert server.connections == 1


def test_a_connection_cut_in_the_middle_of_a_body_is_lost(loop: Loop) -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabcd"

    @serving(loop, answering_once(head, then_close=True))
    async def scenario(server: Server, client: UpstreamClient) -> None:
        answer = await post(client, server.url())
        with pytest.raises(ConnectionLost):
            await answer.read()


@pytest.mark.parametrize(
    "field",
    ["transfer-encoding: chunked", "Transfer-Encoding: Chunked"],
    ids=["lower-case", "capitalised"],
)
def test_a_connection_cut_in_the_middle_of_a_chunked_stream_is_lost(loop: Loop, field: str) -> None:
    head = f"HTTP/1.1 200 OK\r\n{field}\r\n\r\n".encode()

    @serving(loop, answering_once(head, chunk(b"hello"), pause_s=0.05, then_close=True))
    async def scenario(server: Server, client: UpstreamClient) -> None:
        received: list[bytes] = []
        with pytest.raises(ConnectionLost):  # noqa: PT012 (the loop is what is under test)
            async for data in (await post(client, server.url())).chunks():
                received.append(data)
        assert received == [b"hello"]


def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(loop: Loop) -> None:
    @serving(loop, keep_answering)
    async def scenario(server: Server, client: UpstreamClient) -> None:
        for value in ("a\r\nx-injected: 1", "a\nb", "a\rb"):
            with pytest.raises(ValueError, match="line break"):
                await client.post(server.url(), headers={"x-a": value}, body=b"", timeout_s=1)
        await asyncio.sleep(0.05)
        assert server.connections == 0


def test_a_url_that_is_not_http_is_refused(loop: Loop) -> None:
    @serving(loop, keep_answering)
    async def scenario(server: Server, client: UpstreamClient) -> None:
        for url in ("ftp://127.0.0.1/file", "/v1/chat", "http:///v1/chat"):
            with pytest.raises(ValueError, match="not an absolute"):
                await post(client, url)


def test_closing_an_unfinished_response_closes_its_connection(loop: Loop) -> None:
    closed = asyncio.Event()
    half_an_answer = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"

    @serving(loop, first_until_closed(closed, half_an_answer))
    async def scenario(server: Server, client: UpstreamClient) -> None:
        (await post(client, server.url())).close()
        await asyncio.wait_for(closed.wait(), 1)
        assert await fetch(client, server.url()) == b"ok"
        assert server.connections == 2


def test_a_response_read_to_its_end_is_reused_even_when_closed_after(loop: Loop) -> None:
    @serving(loop, keep_answering)
    async def scenario(server: Server, client: UpstreamClient) -> None:
        answer = await post(client, server.url())
        assert await answer.read() == b"ok"
        answer.close()
        assert await fetch(client, server.url()) == b"ok"
        assert server.connections == 1


def test_cancelling_a_request_closes_its_connection(loop: Loop) -> None:
    closed = asyncio.Event()

    @serving(loop, first_until_closed(closed))
    async def scenario(server: Server, client: UpstreamClient) -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(post(client, server.url()), 0.1)
        await asyncio.wait_for(closed.wait(), 1)
        assert await fetch(client, server.url()) == b"ok"
        assert server.connections == 2


def test_a_large_body_read_slowly_in_chunks_arrives_whole(loop: Loop) -> None:
    """Reading pauses while the reader lags and resumes as it catches up; a pause longer than
    the read timeout is the reader's doing, not the vendor's, and does not time out."""

    @serving(loop, answering_once(response(BIG)))
    async def scenario(server: Server, client: UpstreamClient) -> None:
        received = []
        async for data in (await post(client, server.url(), TIMEOUT_S)).chunks():
            received.append(data)
            await asyncio.sleep(TIMEOUT_S * 1.5 if len(received) == 1 else 0.005)
        assert b"".join(received) == BIG


def test_a_large_body_is_read_whole(loop: Loop) -> None:
    @serving(loop, answering_once(response(BIG)))
    async def scenario(server: Server, client: UpstreamClient) -> None:
        assert await fetch(client, server.url()) == BIG


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    return self_signed(tmp_path)


def test_https_works_with_a_context_that_trusts_the_certificate(
    loop: Loop, certificate: Certificate
) -> None:
    server_tls, client_tls = certificate.server_context(), certificate.trusting_context()

    @serving(loop, keep_answering, server_tls=server_tls, client_tls=client_tls)
    async def scenario(server: Server, client: UpstreamClient) -> None:
        assert server.url().startswith("https://")
        assert await fetch(client, server.url()) == b"ok"
        assert await fetch(client, server.url()) == b"ok"
        assert server.connections == 1


def test_https_to_an_untrusted_certificate_is_a_connect_error(
    loop: Loop, certificate: Certificate
) -> None:
    @serving(loop, keep_answering, server_tls=certificate.server_context())
    async def scenario(server: Server, client: UpstreamClient) -> None:
        with pytest.raises(ConnectError):
            await post(client, server.url())


def test_interim_1xx_responses_are_skipped(loop: Loop) -> None:
    early_hints = b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n"

    @serving(loop, answering_once(early_hints + response(b"final", "x-final: yes")))
    async def scenario(server: Server, client: UpstreamClient) -> None:
        final = await post(client, server.url())
        assert (final.status, await final.read()) == (200, b"final")
        assert "link" not in final.headers
        assert final.headers["x-final"] == "yes"


def test_closing_the_client_closes_its_idle_connections(loop: Loop) -> None:
    closed = asyncio.Event()

    @serving(loop, first_until_closed(closed, response()))
    async def scenario(server: Server, client: UpstreamClient) -> None:
        assert await fetch(client, server.url()) == b"ok"
        await asyncio.sleep(0.05)
        assert not closed.is_set()
        await client.close()
        await asyncio.wait_for(closed.wait(), 1)
