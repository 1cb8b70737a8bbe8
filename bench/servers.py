"""Which ASGI server should run Capstan: the same home, load and worker count under uvicorn
with uvloop + httptools (what `capstan serve` runs), uvicorn with asyncio + h11, and granian
(from `.bench/granian`).

All servers are started together and measured in interleaved rounds (A, B, C, A, B, C, ...),
so that the background load of a shared machine falls on each of them alike; the median and
the best round are reported. Idle servers cost next to nothing while another is measured.
"""

from __future__ import annotations

import statistics
from contextlib import ExitStack
from typing import Any

from bench.loadgen import ttfb, wrk
from bench.targets import (
    BODY,
    CAPSTAN_SERVERS,
    STREAM_BODY,
    CapstanHome,
    Skipped,
    Target,
    capstan,
    check,
)

CONCURRENCY = 16
THREADS = 2
C1_SECONDS = 5.0
TTFB_REQUESTS = 300


def _rate(target: Target, seconds: float, connections: int) -> tuple[float, float]:
    threads = THREADS if connections > 1 else 1
    result = wrk(
        target.url,
        BODY,
        target.headers,
        duration_s=seconds,
        connections=connections,
        threads=threads,
    )
    if result.errors:
        raise RuntimeError(f"{target.name}: {result.errors} errors")
    return result.rate, result.p50_ms


def compare_servers(
    home: CapstanHome, rounds: int, round_s: float, warmup_s: float
) -> dict[str, Any]:
    print(f"  servers: {', '.join(CAPSTAN_SERVERS)}, {rounds} rounds of {round_s:g} s", flush=True)
    found: dict[str, dict[str, Any]] = {}
    running: dict[str, Target] = {}
    with ExitStack() as stack:
        for kind in CAPSTAN_SERVERS:
            starter = capstan(home, kind)
            if isinstance(starter, Skipped):
                found[kind] = {"skipped": starter.why}
                continue
            try:
                target = stack.enter_context(starter())
                check(target)
                if warmup_s > 0:
                    _rate(target, warmup_s, CONCURRENCY)
            except Exception as exc:  # a server that cannot serve Capstan is a finding
                found[kind] = {"failed": str(exc)[-2000:]}
                continue
            running[kind] = target
        rates: dict[str, list[float]] = {kind: [] for kind in running}
        for _ in range(rounds):
            for kind, target in running.items():
                rates[kind].append(round(_rate(target, round_s, CONCURRENCY)[0], 1))
        for kind, target in running.items():
            _, c1_p50 = _rate(target, C1_SECONDS, 1)
            assert target.stream_url is not None
            first_byte = ttfb(
                target.stream_url, STREAM_BODY, target.headers, requests=TTFB_REQUESTS
            )
            found[kind] = {
                "rounds": rates[kind],
                "best_req_per_s": max(rates[kind]),
                "median_req_per_s": statistics.median(rates[kind]),
                "c1_p50_ms": c1_p50,
                "ttfb_p50_ms": first_byte.p50_ms,
            }
    base = found.get("uvicorn", {}).get("median_req_per_s")
    for kind in running:
        median = found[kind]["median_req_per_s"]
        found[kind]["median_vs_uvicorn"] = round(median / base, 4) if base else None
    return {"concurrency": CONCURRENCY, "round_s": round_s, "servers": found}
