"""`python -m bench.cpu_ab REV [ROUNDS]`: main-thread CPU per request of the working tree against
git revision REV, in interleaved rounds, with the floor proxy as a yardstick.

Throughput on this shared 2-core machine drifts by ±10 % over minutes, which hides changes of a
few per cent. The CPU the event loop's thread spends per request drifts much less, and rounds of
A, B and the floor side by side let the same drift fall on all three. This is a tool for working
on the hot path, not one of `make bench`'s suites.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench import loadgen, targets
from bench.procs import free_port
from bench.standin import standin

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def _main_thread_cpu_s(pid: int) -> float:
    """utime + stime of the process's main thread (its event loop), in seconds."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _server_pid(pid: int) -> int:
    """`capstan serve` may run the app in a child process; the deepest descendant serves."""
    while True:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if not children:
            return pid
        pid = int(children[0])


@contextmanager
def _checkout(rev: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cpu-ab-") as folder:
        tree = Path(folder) / "tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev],
            check=True,
            capture_output=True,
        )
        try:
            yield tree
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                check=False,
                capture_output=True,
            )


def _measure(target: targets.Target, duration_s: float) -> tuple[float, float]:
    pid = _server_pid(target.pid or 0)
    before = _main_thread_cpu_s(pid)
    result = loadgen.wrk(
        target.url, targets.BODY, target.headers, duration_s=duration_s, connections=16, threads=2
    )
    used = _main_thread_cpu_s(pid) - before
    return result.requests / result.duration_s, used / max(1, result.requests) * 1e6


def run(rev: str, rounds: int, duration_s: float) -> None:
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="cpu-ab-home-") as folder:
        base = stack.enter_context(_checkout(rev))
        upstream = stack.enter_context(standin(free_port()))
        for side in ("before", "after"):
            (Path(folder) / side).mkdir()
        home = targets.capstan_home(Path(folder) / "after", upstream, budgets=True)
        # The revision's own home: its migrations may stop short of the working tree's.
        os.environ["PYTHONPATH"] = str(base / "src")
        try:
            old_home = targets.capstan_home(Path(folder) / "before", upstream, budgets=True)
        finally:
            del os.environ["PYTHONPATH"]
        old = targets.capstan(old_home, name="before")
        new = targets.capstan(home, name="after")
        if isinstance(old, targets.Skipped) or isinstance(new, targets.Skipped):
            raise RuntimeError("Capstan's uvicorn target cannot be skipped")
        started = {
            "floor": stack.enter_context(targets.floor(upstream)()),
            "before": stack.enter_context(old()),
            "after": stack.enter_context(new()),
        }
        for target in started.values():
            targets.check(target)
            loadgen.wrk(
                target.url, targets.BODY, target.headers, duration_s=3, connections=16, threads=2
            )
        seen: dict[str, list[tuple[float, float]]] = {name: [] for name in started}
        for round_ in range(rounds):
            for name, target in started.items():
                seen[name].append(_measure(target, duration_s))
            line = "  ".join(
                f"{n} {r:,.0f}/s {c:.0f}µs" for n, (r, c) in ((n, s[-1]) for n, s in seen.items())
            )
            print(f"round {round_ + 1}: {line}", flush=True)
        for name, samples in seen.items():
            rate = statistics.median(r for r, _ in samples)
            cpu = statistics.median(c for _, c in samples)
            print(f"{name:>7}: median {rate:,.0f} req/s, {cpu:.0f} µs main-thread CPU/request")
        ratios = [a[0] / f[0] for a, f in zip(seen["after"], seen["floor"], strict=True)]
        olds = [b[0] / f[0] for b, f in zip(seen["before"], seen["floor"], strict=True)]
        after, before = statistics.median(ratios), statistics.median(olds)
        print(f"after/floor {after:.3f}  before/floor {before:.3f}")


if __name__ == "__main__":
    run(
        sys.argv[1],
        int(sys.argv[2]) if len(sys.argv) > 2 else 5,
        float(os.environ.get("BENCH_DURATION_S", "8")),
    )
