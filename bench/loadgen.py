"""Load: `wrk` with a generated Lua POST script, and a sequential client for streaming TTFB.

The Lua script's `done` hook prints the run's summary and latency percentiles as one JSON line
(`BENCH_JSON {...}`), so nothing is scraped from wrk's human-readable table.
"""

from __future__ import annotations

import http.client
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import orjson

WRK = shutil.which("wrk") or "/usr/bin/wrk"
MARKER = "BENCH_JSON "

DONE_HOOK = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
    .. '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,'
    .. '"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,'
    .. '"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max))
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    errors: int  # connect, read, write and timeouts, plus non-2xx/3xx answers
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    mean_ms: float
    max_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "req_per_s": round(self.rate, 1)}


def lua_script(body: bytes, headers: dict[str, str]) -> str:
    text = body.decode()
    if "]==]" in text:
        raise ValueError("the body must not contain ]==]")
    lines = ['wrk.method = "POST"', f"wrk.body = [==[{text}]==]"]
    lines.append('wrk.headers["Content-Type"] = "application/json"')
    for name, value in headers.items():
        lines.append(f'wrk.headers["{name}"] = "{value}"')
    return "\n".join(lines) + "\n" + DONE_HOOK


def wrk(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    duration_s: float,
    connections: int,
    threads: int,
    timeout_s: float = 10.0,
) -> WrkResult:
    """One wrk run against `url`; its latencies come from wrk's HdrHistogram (corrected for
    coordinated omission, as wrk does)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="bench-post-") as script:
        script.write(lua_script(body, headers))
        script.flush()
        args = [WRK, f"-t{min(threads, connections)}", f"-c{connections}"]
        args += [f"-d{max(1, round(duration_s))}s", f"--timeout={timeout_s:g}s", "--latency"]
        args += ["-s", script.name, url]
        done = subprocess.run(args, capture_output=True, text=True, check=False)
    line = next((x for x in done.stdout.splitlines() if x.startswith(MARKER)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    raw = orjson.loads(line[len(MARKER) :])
    errors = sum(
        raw[name]
        for name in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    return WrkResult(
        requests=raw["requests"],
        duration_s=raw["duration_us"] / 1e6,
        errors=errors,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        p999_ms=raw["p999_us"] / 1000,
        mean_ms=round(raw["mean_us"] / 1000, 4),
        max_ms=raw["max_us"] / 1000,
    )


@dataclass(frozen=True)
class TtfbResult:
    requests: int
    p50_ms: float
    p99_ms: float
    mean_ms: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def ttfb(url: str, body: bytes, headers: dict[str, str], *, requests: int) -> TtfbResult:
    """Sequential streaming requests on one keep-alive connection: the time from sending the
    request to the first byte of the response body (the first SSE event). The rest of each
    stream is read, and must end with `data: [DONE]`, before the next request."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    sent = {"content-type": "application/json", "accept": "text/event-stream", **headers}
    samples: list[float] = []
    try:
        for _ in range(requests):
            started = time.perf_counter()
            conn.request("POST", parts.path, body=body, headers=sent)
            response = conn.getresponse()
            first = response.read1(1)
            samples.append(time.perf_counter() - started)
            rest = response.read()
            if response.status != 200 or b"[DONE]" not in first + rest:
                raise RuntimeError(
                    f"{url}: bad stream ({response.status}): {(first + rest)[:300]!r}"
                )
    finally:
        conn.close()
    ms = [s * 1000 for s in samples]
    return TtfbResult(
        requests=len(ms),
        p50_ms=round(statistics.median(ms), 4),
        p99_ms=round(percentile(ms, 99), 4),
        mean_ms=round(statistics.fmean(ms), 4),
    )


def wrk_version() -> str:
    done = subprocess.run([WRK, "-v"], capture_output=True, text=True, check=False)
    return (done.stdout + done.stderr).splitlines()[0].split(" Copyright")[0]


def nginx_version(nginx: str | Path) -> str:
    done = subprocess.run([str(nginx), "-v"], capture_output=True, text=True, check=False)
    return (done.stderr or done.stdout).strip().removeprefix("nginx version: ")
