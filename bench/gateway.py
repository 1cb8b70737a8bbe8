"""The data plane's cost, against the floor for any Python gateway and against LiteLLM.

One run measures, one after the other and one worker each, in front of the same nginx stand-in
that answers instantly (see `bench/standin.py`):

- `direct`: the stand-in itself, the ceiling;
- `floor`: a ~40-line pass-through (uvicorn + one aiohttp session, `bench/floor_proxy.py`), the
  least any Python gateway can cost;
- `capstan`: `capstan serve` with auth (a service key), routing (an alias over a deployment) and
  whatever the request path records on every call;
- `litellm`: the LiteLLM proxy, latest release in `.bench/litellm` (master key, no database).

Load comes from `wrk` (concurrency 16, 2 threads) after a warm-up. The floor and Capstan run
side by side, in alternating rounds of the full duration (floor, Capstan, floor, ...), so that
a noisy machine's slow spells fall on both alike; each one's figures are its median round, and
Capstan/floor is the median of the per-round ratios. Then, for direct and Capstan (and the
floor): latency at concurrency 1, streaming time to first byte (sequential requests on one
connection), and Capstan's resident memory over 100k requests. `--servers` also compares ASGI
servers for Capstan (`bench/servers.py`).

Environment: BENCH_DURATION_S (30), BENCH_ROUNDS (3), BENCH_WARMUP_S (5), BENCH_CONCURRENCY
(16), BENCH_THREADS (2), BENCH_C1_DURATION_S (the duration), BENCH_TTFB_REQUESTS (1000),
BENCH_RSS_REQUESTS (100000), BENCH_RSS_CHUNK_S (10), BENCH_SERVERS (0), BENCH_SERVER_ROUNDS
(3), BENCH_SERVER_ROUND_S (10), BENCH_ONLY (comma-separated target
names, for a partial run). Results: a table here and a JSON file in
`.bench/results/`.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench import targets
from bench.loadgen import WrkResult, nginx_version, ttfb, wrk, wrk_version
from bench.peers import BENCH_HOME, PEERS, ROOT
from bench.procs import free_port, rss_mb
from bench.servers import compare_servers
from bench.standin import NGINX, standin
from bench.targets import BODY, STREAM_BODY, Skipped, Starter, Target, check

RESULTS = BENCH_HOME / "results"


@dataclass(frozen=True)
class Options:
    duration_s: float
    rounds: int
    warmup_s: float
    concurrency: int
    threads: int
    c1_duration_s: float
    ttfb_requests: int
    rss_requests: int
    rss_chunk_s: float
    servers: bool
    server_rounds: int
    server_round_s: float
    only: tuple[str, ...]  # target names to run; empty: all

    @classmethod
    def from_env(cls, argv: list[str]) -> Options:
        def number(name: str, default: float) -> float:
            return float(os.environ.get(name, default))

        duration = number("BENCH_DURATION_S", 30)
        return cls(
            duration_s=duration,
            rounds=max(1, int(number("BENCH_ROUNDS", 3))),
            warmup_s=number("BENCH_WARMUP_S", 5),
            concurrency=int(number("BENCH_CONCURRENCY", 16)),
            threads=int(number("BENCH_THREADS", 2)),
            c1_duration_s=number("BENCH_C1_DURATION_S", duration),
            ttfb_requests=int(number("BENCH_TTFB_REQUESTS", 1000)),
            rss_requests=int(number("BENCH_RSS_REQUESTS", 100_000)),
            rss_chunk_s=number("BENCH_RSS_CHUNK_S", 10),
            servers="--servers" in argv or os.environ.get("BENCH_SERVERS", "0") == "1",
            server_rounds=int(number("BENCH_SERVER_ROUNDS", 3)),
            server_round_s=number("BENCH_SERVER_ROUND_S", 10),
            only=tuple(filter(None, os.environ.get("BENCH_ONLY", "").split(","))),
        )


def _load(target: Target, opts: Options, seconds: float, connections: int) -> WrkResult:
    threads = opts.threads if connections > 1 else 1
    return wrk(
        target.url,
        BODY,
        target.headers,
        duration_s=seconds,
        connections=connections,
        threads=threads,
    )


def warm(target: Target, opts: Options) -> dict[str, Any]:
    """Checked, warmed up, and its memory before any load."""
    check(target)
    found: dict[str, Any] = {}
    if target.pid is not None:
        found["rss_cold_mb"] = round(rss_mb(target.pid), 1)
    if opts.warmup_s > 0:
        _load(target, opts, opts.warmup_s, opts.concurrency)
    return found


def measure(target: Target, opts: Options, *, latency: bool, memory: bool) -> dict[str, Any]:
    found = warm(target, opts)
    print(f"  {target.name}: c{opts.concurrency} for {opts.duration_s:g} s", flush=True)
    found["load"] = _load(target, opts, opts.duration_s, opts.concurrency).as_dict()
    return found | after_load(target, opts, latency=latency, memory=memory)


def after_load(target: Target, opts: Options, *, latency: bool, memory: bool) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if latency:
        print(f"  {target.name}: c1 for {opts.c1_duration_s:g} s", flush=True)
        found["c1"] = _load(target, opts, opts.c1_duration_s, 1).as_dict()
        if target.stream_url and opts.ttfb_requests > 0:
            print(f"  {target.name}: {opts.ttfb_requests} streams, TTFB", flush=True)
            headers = target.headers
            found["ttfb"] = ttfb(
                target.stream_url, STREAM_BODY, headers, requests=opts.ttfb_requests
            ).as_dict()
    if memory and target.pid is not None and opts.rss_requests > 0:
        found["rss"] = memory_over(target, opts)
    return found


def memory_over(target: Target, opts: Options) -> dict[str, Any]:
    """Resident memory sampled before, between chunks of load, and after `rss_requests`."""
    assert target.pid is not None
    print(f"  {target.name}: RSS over {opts.rss_requests:,} requests", flush=True)
    before = rss_mb(target.pid)
    samples: list[dict[str, float]] = [{"requests": 0, "rss_mb": round(before, 1)}]
    served = 0
    while served < opts.rss_requests:
        result = _load(target, opts, opts.rss_chunk_s, opts.concurrency)
        if result.errors:
            raise RuntimeError(f"{target.name}: {result.errors} errors during the memory run")
        served += result.requests
        samples.append({"requests": served, "rss_mb": round(rss_mb(target.pid), 1)})
    after = samples[-1]["rss_mb"]
    return {
        "requests": served,
        "before_mb": round(before, 1),
        "after_mb": after,
        "max_mb": max(s["rss_mb"] for s in samples),
        "growth_mb": round(after - before, 1),
        "samples": samples,
    }


def measure_paired(
    pair: dict[str, Starter | Skipped], opts: Options, *, memory: set[str]
) -> dict[str, dict[str, Any]]:
    """The floor and Capstan started together and loaded in alternating rounds; each keeps
    its median round as `load`, with every round's rate in `rounds`. A target that cannot
    start is reported as such and the other is measured alone."""
    results: dict[str, dict[str, Any]] = {}
    running: dict[str, Target] = {}
    with ExitStack() as stack:
        for name, starter in pair.items():
            if isinstance(starter, Skipped):
                results[name] = run_target(name, starter, opts, latency=False, memory=False)
                continue
            try:
                target = stack.enter_context(starter())
                results[name] = warm(target, opts)
            except Exception as exc:  # one broken target must not lose the other's figures
                print(f"  {name}: FAILED: {exc}", flush=True)
                results[name] = {"failed": str(exc)[-2000:]}
                continue
            running[name] = target
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in running}
        for number in range(opts.rounds):
            for name, target in running.items():
                print(
                    f"  {name}: c{opts.concurrency} for {opts.duration_s:g} s"
                    f" (round {number + 1} of {opts.rounds})",
                    flush=True,
                )
                result = _load(target, opts, opts.duration_s, opts.concurrency)
                rounds[name].append(result.as_dict())
        for name, target in running.items():
            by_rate = sorted(rounds[name], key=lambda r: r["req_per_s"])
            results[name]["load"] = by_rate[(len(by_rate) - 1) // 2]
            results[name]["rounds"] = [r["req_per_s"] for r in rounds[name]]
            results[name] |= after_load(target, opts, latency=True, memory=name in memory)
    return results


def run_target(
    name: str, starter: Starter | Skipped, opts: Options, *, latency: bool, memory: bool
) -> dict[str, Any]:
    if isinstance(starter, Skipped):
        if starter.failed:
            print(f"  {name}: FAILED: {starter.why}", flush=True)
            return {"failed": starter.why[-2000:]}
        print(f"  {name}: skipped, {starter.why}", flush=True)
        return {"skipped": starter.why}
    try:
        with starter() as target:
            return measure(target, opts, latency=latency, memory=memory)
    except Exception as exc:  # one broken target must not lose the others' figures
        print(f"  {name}: FAILED: {exc}", flush=True)
        return {"failed": str(exc)[-2000:]}


def machine() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "wrk": wrk_version(),
        "nginx": nginx_version(NGINX),
        "litellm": PEERS["litellm"].version("litellm"),
        "granian": PEERS["granian"].version("granian"),
        "pythonpath": os.environ.get("PYTHONPATH"),
        "capstan_commit": git("rev-parse", "--short", "HEAD")
        + (" (dirty)" if git("status", "--porcelain", "--untracked-files=no") else ""),
    }


def run(argv: list[str] | None = None) -> None:
    opts = Options.from_env(argv or [])
    print("== gateway ==", flush=True)
    started = datetime.now(UTC)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="capstan-bench-") as name, standin(free_port()) as up:
        folder = Path(name)
        try:
            home: targets.CapstanHome | None = targets.capstan_home(folder, up)
        except Exception as exc:
            home = None
            setup_error = str(exc)

        def wanted(label: str) -> bool:
            return not opts.only or label in opts.only

        if wanted("direct"):
            results["direct"] = run_target(
                "direct", targets.direct(up), opts, latency=True, memory=False
            )
        capstan = targets.capstan(home) if home else Skipped("capstan", setup_error, True)
        pair: dict[str, Starter | Skipped] = {"floor": targets.floor(up), "capstan": capstan}
        if wanted("capstan-budgets"):
            pair["capstan-budgets"] = _with_budgets(folder / "budgets", up)
        results |= measure_paired(
            {label: starter for label, starter in pair.items() if wanted(label)},
            opts,
            memory={"capstan"},
        )
        if wanted("litellm"):
            results["litellm"] = run_target(
                "litellm", targets.litellm(folder, up), opts, latency=False, memory=False
            )
        servers = None
        if opts.servers:
            servers = (
                compare_servers(home, opts.server_rounds, opts.server_round_s, opts.warmup_s)
                if home
                else {"failed": setup_error}
            )
    summary = summarize(results)
    document = {
        "started_at": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "options": opts.__dict__,
        "targets": results,
        **summary,
        "servers": servers,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"gateway-{started.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    print_report(results, summary, opts)
    if servers is not None:
        print_servers(servers)
    print(f"results: {path.relative_to(ROOT)}")


def _with_budgets(folder: Path, standin_url: str) -> Starter | Skipped:
    """Capstan from a home of its own holding the four benchmark budgets."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        home = targets.capstan_home(folder, standin_url, budgets=True)
    except Exception as exc:
        return Skipped("capstan-budgets", str(exc), True)
    return targets.capstan(home, name="capstan-budgets")


# -- summary and report ------------------------------------------------------------------------


def _get(results: dict[str, dict[str, Any]], target: str, *path: str) -> float | None:
    node: Any = results.get(target, {})
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def _paired_ratio(results: dict[str, dict[str, Any]], a: str, b: str) -> float | None:
    """The median of the per-round ratios of targets measured in alternating rounds."""
    ours, theirs = results.get(a, {}).get("rounds"), results.get(b, {}).get("rounds")
    if not ours or not theirs:
        return _ratio(_get(results, a, "load", "req_per_s"), _get(results, b, "load", "req_per_s"))
    per_round: list[float] = [x / y for x, y in zip(ours, theirs, strict=True)]
    return round(statistics.median(per_round), 4)


def _diff(a: float | None, b: float | None) -> float | None:
    return round(a - b, 3) if a is not None and b is not None else None


def summarize(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    def rate(name: str) -> float | None:
        return _get(results, name, "load", "req_per_s")

    ratios: dict[str, float | None] = {
        "capstan/floor": _paired_ratio(results, "capstan", "floor"),
        "capstan-budgets/capstan": _paired_ratio(results, "capstan-budgets", "capstan"),
        "capstan/litellm": _ratio(rate("capstan"), rate("litellm")),
        "capstan/direct": _ratio(rate("capstan"), rate("direct")),
        "floor/direct": _ratio(rate("floor"), rate("direct")),
        "litellm/floor": _ratio(rate("litellm"), rate("floor")),
    }
    added = {
        f"{name}_{q}_ms": _diff(
            _get(results, name, "c1", f"{q}_ms"), _get(results, "direct", "c1", f"{q}_ms")
        )
        for name in ("capstan", "floor")
        for q in ("p50", "p99")
    }
    ttfb_added = {
        q: _diff(_get(results, "capstan", "ttfb", q), _get(results, "direct", "ttfb", q))
        for q in ("p50_ms", "p99_ms")
    }
    rss = results.get("capstan", {}).get("rss", {})
    checks = {
        "throughput >= 60% of floor": _verdict(ratios["capstan/floor"], lambda v: v >= 0.6),
        "4 budgets cost <= 10% of throughput": _verdict(
            ratios["capstan-budgets/capstan"], lambda v: v >= 0.9
        ),
        "c1 added p50 <= 0.5 ms": _verdict(added["capstan_p50_ms"], lambda v: v <= 0.5),
        "c1 added p99 <= 2 ms": _verdict(added["capstan_p99_ms"], lambda v: v <= 2.0),
        "stream TTFB added p50 <= 1 ms": _verdict(ttfb_added["p50_ms"], lambda v: v <= 1.0),
        "RSS <= 150 MB": _verdict(rss.get("max_mb"), lambda v: v <= 150),
        "RSS flat (growth <= 10 MB)": _verdict(rss.get("growth_mb"), lambda v: v <= 10),
    }
    return {
        "ratios": ratios,
        "c1_added": added,
        "ttfb_added": ttfb_added,
        "checks": checks,
    }


def _verdict(value: float | None, ok: Any) -> str:
    if value is None:
        return "n/a"
    return "pass" if ok(value) else "FAIL"


def _fmt(value: float | None, spec: str = ",.1f") -> str:
    return "-" if value is None else format(value, spec)


COLUMNS: tuple[tuple[str, str, str, str, int], ...] = (
    # header, section, field, format, width
    ("req/s", "load", "req_per_s", ",.1f", 10),
    ("p50 ms", "load", "p50_ms", ".2f", 8),
    ("p99 ms", "load", "p99_ms", ".2f", 8),
    ("errors", "load", "errors", ",.0f", 7),
    ("c1 p50", "c1", "p50_ms", ".3f", 8),
    ("c1 p99", "c1", "p99_ms", ".3f", 8),
    ("TTFB p50", "ttfb", "p50_ms", ".3f", 9),
    ("TTFB p99", "ttfb", "p99_ms", ".3f", 9),
)


def print_report(
    results: dict[str, dict[str, Any]], summary: dict[str, Any], opts: Options
) -> None:
    print(f"\nload: c{opts.concurrency} (req/s, p50, p99, errors); c1: one connection (ms)")
    print(f"{'target':<28}" + "".join(f"{h:>{w}}" for h, _, _, _, w in COLUMNS))
    for name, found in results.items():
        if "load" not in found:
            why = found.get("skipped") or "FAILED: " + found.get("failed", "")[:90]
            print(f"{name:<28}{why}")
            continue
        cells = (
            f"{_fmt(_get(results, name, section, key), spec):>{width}}"
            for _, section, key, spec, width in COLUMNS
        )
        print(f"{name:<28}" + "".join(cells))
    for name, found in results.items():
        if found.get("rounds"):
            rates = " · ".join(f"{rate:,.0f}" for rate in found["rounds"])
            print(f"{name:<28}rounds (req/s, c{opts.concurrency}): {rates}")
    print()
    for name, value in summary["ratios"].items():
        shown = "-" if value is None else f"{value * 100:,.1f} %  ({value:,.2f}x)"
        print(f"  throughput {name:<34} {shown}")
    added = summary["c1_added"]
    for name in ("capstan", "floor"):
        p50, p99 = _fmt(added[f"{name}_p50_ms"], ".3f"), _fmt(added[f"{name}_p99_ms"], ".3f")
        print(f"  c1 latency added over direct, {name:<8} p50 {p50} ms  p99 {p99} ms")
    ttfb_added = summary["ttfb_added"]
    print(
        f"  stream TTFB added, capstan      p50 {_fmt(ttfb_added['p50_ms'], '.3f')} ms"
        f"  p99 {_fmt(ttfb_added['p99_ms'], '.3f')} ms"
    )
    rss = results.get("capstan", {}).get("rss")
    if rss:
        print(
            f"  capstan RSS over {rss['requests']:,} requests: before {rss['before_mb']} MB,"
            f" after {rss['after_mb']} MB, max {rss['max_mb']} MB, growth {rss['growth_mb']} MB"
        )
    print()
    for name, verdict in summary["checks"].items():
        print(f"  {verdict:<5} {name}")
    print()
    sys.stdout.flush()


def print_servers(servers: dict[str, Any]) -> None:
    print("ASGI server for Capstan, interleaved rounds (req/s at c16; c1 and TTFB p50 in ms)")
    if "failed" in servers:
        print(f"  FAILED: {servers['failed']}")
        return
    for kind, found in servers["servers"].items():
        if "rounds" not in found:
            print(
                f"  {kind:<22} {found.get('skipped') or 'FAILED: ' + found.get('failed', '')[:90]}"
            )
            continue
        vs = found.get("median_vs_uvicorn")
        share = "-" if vs is None else f"{vs * 100:.0f} %"
        rounds = " ".join(f"{rate:,.0f}" for rate in found["rounds"])
        print(
            f"  {kind:<22} median {found['median_req_per_s']:>8,.1f} ({share} of uvicorn)"
            f"  best {found['best_req_per_s']:>8,.1f}  rounds {rounds}"
        )
        c1, first = _fmt(found["c1_p50_ms"], ".3f"), _fmt(found["ttfb_p50_ms"], ".3f")
        print(f"  {'':<22} c1 p50 {c1} ms  stream TTFB p50 {first} ms")
    print()
