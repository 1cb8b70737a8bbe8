"""Server processes for the benchmark: start, wait until they answer, stop, measure memory."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


class StartFailed(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path | None, limit: int = 4000) -> str:
    if path is None or not path.exists():
        return ""
    return path.read_text(errors="replace")[-limit:]


def wait_ready(
    proc: subprocess.Popen[bytes],
    url: str,
    name: str,
    log: Path | None = None,
    timeout_s: float = 120.0,
    headers: dict[str, str] | None = None,
) -> None:
    """Poll `url` until it answers below 500; raise with the log's tail if the process dies."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=2, headers=headers).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            why = "exited" if proc.poll() is not None else f"no answer in {timeout_s:.0f} s"
            stderr = b""
            if proc.poll() is not None and proc.stderr is not None:
                stderr = proc.stderr.read()
            raise StartFailed(
                f"{name} did not start ({why}): {stderr.decode()[-4000:]}{_tail(log)}"
            )
        time.sleep(0.1)


@contextmanager
def server(
    args: list[str],
    env: dict[str, str],
    ready_url: str,
    name: str,
    *,
    timeout_s: float = 120.0,
    headers: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `args` for the block, its output in a temporary log; yields the process."""
    with tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(proc, ready_url, name, Path(log.name), timeout_s, headers)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its descendants (worker processes), in MB (10^6 bytes)."""
    total_kb = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total_kb += int(line.split()[1])
        pending += _children(current)
    return total_kb * 1024 / 1e6
