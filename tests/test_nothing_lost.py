"""Nothing lost: every request whose response reached its client has exactly one request event,
even when the server is killed with SIGKILL half-way through a load, or the database goes away
for part of it; and SIGTERM drains in-flight requests before the process exits.

The server is a real `capstan serve` child process in front of the upstream simulator; the load
comes from an aiohttp client at concurrency 32."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest
from sqlalchemy import func, select

from capstan.store import create_store
from capstan.store.schema import RequestEvent
from capstan.testing.simulator import build_simulator
from tests.capstan_process import CapstanProcess
from tests.databases import PostgresTemplate
from tests.servers import RunningServer, start_asgi
from tests.tcp_proxy import TcpProxy

TOTAL = 2_000
CONCURRENCY = 32
MODEL = "chat"


@pytest.fixture(scope="module")
def simulator() -> Iterator[RunningServer]:
    server = start_asgi(build_simulator())
    yield server
    server.stop()


def configure(capstan: CapstanProcess, key: str, simulator: str) -> None:
    document = f"""
providers:
  - {{name: sim, kind: openai, base_url: "{simulator}/v1", api_key: sk-sim}}
deployments:
  - {{name: mini, provider: sim, model: gpt-4o-mini}}
aliases:
  - {{name: {MODEL}, targets: [{{deployment: mini}}]}}
"""
    response = httpx.post(
        capstan.url + "/api/v1/config/apply",
        headers={"Authorization": f"Bearer {key}"},
        json={"document": document},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    served_in_a_row, deadline = 0, time.monotonic() + 15
    while served_in_a_row < 20:  # every worker has the configuration (they poll for it)
        assert time.monotonic() < deadline, "the configuration never reached every worker"
        answer = httpx.post(
            capstan.url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": MODEL, "messages": [{"role": "user", "content": "warm-up"}]},
        )
        served_in_a_row = served_in_a_row + 1 if answer.status_code == 200 else 0


async def drive(
    url: Callable[[], str], key: str, count: int, on_done: Callable[[int], None] | None = None
) -> tuple[set[str], int]:
    """Send `count` chat completions at CONCURRENCY; the request ids of those that completed
    (a 200 read to its end), and how many failed (refused or cut by a dying server)."""
    completed: set[str] = set()
    failed = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "nothing lost"}]}
    headers = {"Authorization": f"Bearer {key}"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:

        async def worker() -> None:
            nonlocal failed
            while not queue.empty():
                queue.get_nowait()
                try:
                    async with http.post(url() + "/v1/chat/completions", json=body) as response:
                        await response.read()
                        if response.status == 200:
                            completed.add(response.headers["x-capstan-request-id"])
                            if on_done is not None:
                                on_done(len(completed))
                        else:
                            failed += 1
                except (TimeoutError, aiohttp.ClientError):
                    failed += 1
                    await asyncio.sleep(0.01)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return completed, failed


def stored_events(database_url: str, ids: set[str]) -> tuple[int, int]:
    """(events among `ids` in the store, all events in the store)."""
    store = create_store(database_url)
    try:
        with store.read() as session:
            wanted = [uuid.UUID(i) for i in ids]
            found = 0
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                found += (
                    session.scalar(
                        select(func.count())
                        .select_from(RequestEvent)
                        .where(RequestEvent.id.in_(chunk))
                    )
                    or 0
                )
            total = session.scalar(select(func.count()).select_from(RequestEvent)) or 0
            distinct = session.scalar(select(func.count(func.distinct(RequestEvent.id)))) or 0
            assert distinct == total, "duplicate events"
    finally:
        store.dispose()
    return found, total


def wait_for_events(database_url: str, ids: set[str], timeout_s: float = 60.0) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        found, _total = stored_events(database_url, ids)
        if found == len(ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.25)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'capstan.db'}"


@pytest.mark.parametrize("workers", [1, 2])
def test_a_sigkill_half_way_loses_no_event_of_a_completed_request(
    tmp_path: Path, sqlite_url: str, simulator: RunningServer, workers: int
) -> None:
    """With two workers, both write into one spool folder; the restarted server adopts the
    spools of both dead processes."""
    capstan = CapstanProcess(tmp_path / "home", sqlite_url, workers=workers)
    key = capstan.init()
    capstan.start()
    configure(capstan, key, simulator.url)

    def kill_half_way(done: int) -> None:
        if done == TOTAL // 2:
            capstan.kill()

    before, failed_before = asyncio.run(drive(lambda: capstan.url, key, TOTAL, kill_half_way))
    capstan.start()  # same home, so the same spool: the new process adopts the dead one's
    after, _ = asyncio.run(drive(lambda: capstan.url, key, failed_before))
    completed = before | after
    try:
        found = wait_for_events(sqlite_url, completed)
    finally:
        capstan.terminate()

    assert len(before) >= TOTAL // 2
    assert found == len(completed)


@pytest.mark.postgres
def test_a_database_outage_during_the_load_loses_no_event(
    tmp_path: Path, postgres_template: PostgresTemplate, simulator: RunningServer
) -> None:
    name, direct_url = postgres_template.clone()
    proxy = TcpProxy("127.0.0.1", 5432)
    proxy.resume()
    through_proxy = direct_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    capstan = CapstanProcess(tmp_path / "home", through_proxy)
    try:
        key = capstan.init()
        capstan.start()
        configure(capstan, key, simulator.url)

        def outage(done: int) -> None:
            if done == TOTAL // 4:
                proxy.pause()
            elif done == 3 * TOTAL // 4:
                proxy.resume()

        completed, failed = asyncio.run(drive(lambda: capstan.url, key, TOTAL, outage))
        found = wait_for_events(direct_url, completed)
        capstan.terminate()
    finally:
        capstan.kill()
        proxy.close()
        postgres_template.drop(name)

    assert failed == 0, "requests must keep being served while the database is away"
    assert len(completed) == TOTAL
    assert found == TOTAL


def test_sigterm_drains_in_flight_requests_and_flushes_their_events(
    tmp_path: Path, sqlite_url: str, simulator: RunningServer
) -> None:
    capstan = CapstanProcess(tmp_path / "home", sqlite_url)
    key = capstan.init()
    capstan.start()
    configure(capstan, key, simulator.url)
    httpx.put(f"{simulator.url}/_sim/faults", json={"model": "gpt-4o-mini", "latency_ms": 1000})

    async def slow_calls_then_sigterm() -> set[str]:
        calls = asyncio.ensure_future(drive(lambda: capstan.url, key, 8))
        await asyncio.sleep(0.4)  # all 8 are in flight, waiting on the upstream
        exit_code = await asyncio.to_thread(capstan.terminate)
        # uvicorn re-raises the signal once it has shut down cleanly, so the status says SIGTERM.
        assert exit_code in (0, -signal.SIGTERM)
        completed, failed = await calls
        assert failed == 0
        return completed

    try:
        completed = asyncio.run(slow_calls_then_sigterm())
    finally:
        httpx.delete(f"{simulator.url}/_sim/faults")
        capstan.kill()

    assert len(completed) == 8
    found, _ = stored_events(sqlite_url, completed)
    assert found == 8, "the events were in the database when the process exited"
