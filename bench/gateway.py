"""Data-plane cost: the same chat completion sent straight to the upstream simulator and through
the gateway, at the same concurrency, from a separate load process.

The simulator, the gateway and the load generator each run in their own process (the machine
has two cores, so the three compete: the ratio, not the absolute rate, is the figure to read).
What the ratio shows is what the gateway adds per call: authentication, routing, a second HTTP
hop and the JSON round trip.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import httpx
from tests.servers import free_port

from bench.core import MASTER_KEY, report

CAPSTAN = str(Path(sys.executable).parent / "capstan")
BODY = {"model": "", "messages": [{"role": "user", "content": "hello from the benchmark"}]}
CONCURRENCY = 32
DURATION_S = 8.0


@contextmanager
def process(args: list[str], env: dict[str, str], url: str) -> Iterator[None]:
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url, timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"{args[1]} did not start: {proc.stderr.read() if proc.stderr else ''}"
                )
            time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def load(url: str, headers: dict[str, str], model: str) -> tuple[float, list[float]]:
    latencies: list[float] = []
    body = {**BODY, "model": model}
    stop_at = time.monotonic() + DURATION_S
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:

        async def worker() -> None:
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                async with http.post(url, json=body) as response:
                    await response.read()
                    assert response.status == 200, response.status
                latencies.append(time.perf_counter() - started)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return len(latencies) / (time.monotonic() - started), latencies


def run() -> None:
    print("== gateway ==")
    with tempfile.TemporaryDirectory() as folder:
        sim_port, gw_port = free_port(), free_port()
        sim = f"http://127.0.0.1:{sim_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAPSTAN_")}
        env |= {"CAPSTAN_HOME": f"{folder}/home", "CAPSTAN_MASTER_KEY": MASTER_KEY}
        init = subprocess.run(
            [CAPSTAN, "init", "--json"], env=env, capture_output=True, text=True, check=True
        )
        key = init.stdout.split('"admin_key": "')[1].split('"')[0]
        document = (
            "providers:\n"
            f"  - {{name: sim, kind: openai, base_url: '{sim}/v1', api_key: sk-bench}}\n"
            "deployments:\n  - {name: bench@sim, provider: sim, model: gpt-4o-mini}\n"
        )
        Path(folder, "gateway.yaml").write_text(document)
        subprocess.run(
            [CAPSTAN, "apply", "-f", f"{folder}/gateway.yaml"],
            env=env,
            check=True,
            capture_output=True,
        )
        sim_cmd = [CAPSTAN, "upstream-sim", "--port", str(sim_port)]
        gw_cmd = [CAPSTAN, "serve", "--port", str(gw_port)]
        with (
            process(sim_cmd, env, f"{sim}/v1/models"),
            process(gw_cmd, env, f"http://127.0.0.1:{gw_port}/healthz"),
        ):
            direct_rate, direct = asyncio.run(
                load(f"{sim}/v1/chat/completions", {"authorization": "Bearer sk"}, "gpt-4o-mini")
            )
            gw_rate, via = asyncio.run(
                load(
                    f"http://127.0.0.1:{gw_port}/v1/chat/completions",
                    {"authorization": f"Bearer {key}"},
                    "bench@sim",
                )
            )
    p50_direct = statistics.median(direct) * 1000
    p50_via = statistics.median(via) * 1000
    report("chat completion, simulator directly", direct_rate, "req/s", f"p50 {p50_direct:.1f} ms")
    report("chat completion, through the gateway", gw_rate, "req/s", f"p50 {p50_via:.1f} ms")
    report(
        "gateway / direct throughput", gw_rate / direct_rate * 100, "%", f"{CONCURRENCY} clients"
    )
