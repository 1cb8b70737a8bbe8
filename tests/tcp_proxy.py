"""A loopback TCP proxy that tests can cut and restore, to stage a database outage.

`pause()` closes the listening socket and kills every forwarded connection, so clients see
their open connections drop and new ones refused at once (ECONNREFUSED, never a hang);
`resume()` listens again on the same port. While paused the port stays reserved by a bound,
non-listening socket, so no other process can take it in the meantime.
"""

from __future__ import annotations

import contextlib
import socket
import threading

_CHUNK = 65_536
_ACCEPT_TICK = 0.05


class TcpProxy:
    """Forwards 127.0.0.1:<port> to `target` until paused or closed."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._running = threading.Event()
        self._acceptor: threading.Thread | None = None
        self._socket = self._bound_socket(0)
        self.port: int = self._socket.getsockname()[1]
        self.resume()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def resume(self) -> None:
        """Accept connections again, on the same port."""
        if self._running.is_set():
            return
        self._socket.listen(64)
        self._socket.settimeout(_ACCEPT_TICK)
        self._running.set()
        self._acceptor = threading.Thread(
            target=self._accept_loop, args=(self._socket,), name="tcp-proxy-accept", daemon=True
        )
        self._acceptor.start()

    def pause(self) -> None:
        """Refuse new connections and cut every open one, as a database going down would."""
        self._stop_accepting()
        # Keep the port: a bound socket that does not listen answers SYNs with a reset.
        self._socket = self._bound_socket(self.port)
        self._kill_connections()

    def close(self) -> None:
        self._stop_accepting()
        self._kill_connections()
        self._socket.close()

    @staticmethod
    def _bound_socket(port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        return sock

    def _stop_accepting(self) -> None:
        if not self._running.is_set():
            return
        self._running.clear()
        if self._acceptor is not None:
            self._acceptor.join()
            self._acceptor = None
        self._socket.close()

    def _kill_connections(self) -> None:
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
            threads = list(self._threads)
            self._threads.clear()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(timeout=5)
        for conn in connections:
            conn.close()

    def _accept_loop(self, listener: socket.socket) -> None:
        while self._running.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self._forward(client, upstream)

    def _forward(self, client: socket.socket, upstream: socket.socket) -> None:
        pumps = [
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True),
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True),
        ]
        with self._lock:
            if not self._running.is_set():
                client.close()
                upstream.close()
                return
            self._connections.update((client, upstream))
            self._threads.extend(pumps)
        for pump in pumps:
            pump.start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        """Copy bytes one way; when either side ends, end both so the peer notices."""
        try:
            while data := source.recv(_CHUNK):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
