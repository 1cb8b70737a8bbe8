"""A real Capstan HTTP server on a loopback port, run in a thread for the test's duration."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from capstan.app import build_server_app
from capstan.config import Settings
from capstan.gateway.server_protocol import CoalescingHttpToolsProtocol


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RunningServer:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_server(
    settings: Settings, *, certfile: Path | None = None, keyfile: Path | None = None
) -> RunningServer:
    return start_asgi(build_server_app(settings), certfile=certfile, keyfile=keyfile)


def start_asgi(
    app: ASGIApp, *, certfile: Path | None = None, keyfile: Path | None = None
) -> RunningServer:
    """Serve any ASGI app (Capstan, the upstream simulator) on a free loopback port."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        ssl_certfile=str(certfile) if certfile else None,
        ssl_keyfile=str(keyfile) if keyfile else None,
        http=CoalescingHttpToolsProtocol,  # what `capstan serve` runs
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    scheme = "https" if certfile else "http"
    return RunningServer(f"{scheme}://127.0.0.1:{port}", server, thread)
