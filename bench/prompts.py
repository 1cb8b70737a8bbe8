"""Managed prompts: what resolving and rendering a prompt adds to a gateway request (issue 7's
budget: at most 100 µs p50).

Two measurements:
1. In process, the request path's own code: `prompt_ref` + `choose` (snapshot lookup, label or
   the caller's experiment variant) + `render_into` (variables checked, sandboxed Jinja2,
   messages and parameters merged into the body), per call, on a fresh body each time.
2. End to end, at concurrency 1: `capstan serve` in front of the nginx stand-in, alternating
   rounds of the same call with the rendered messages written out by the client (`plain`) and
   with the prompt named instead (`prompt`); the added latency is the difference of the p50s.

Environment: BENCH_PROMPT_CALLS (20000), BENCH_DURATION_S (10), BENCH_ROUNDS (3).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson

from bench import loadgen, targets
from bench.procs import free_port
from bench.standin import standin
from capstan.gateway.recording import CallRecord
from capstan.identity.principal import Principal
from capstan.identity.roles import Role
from capstan.identity.scope import ScopePath
from capstan.prompts.assignment import Variant
from capstan.prompts.render import compile_prompt
from capstan.prompts.serving import apply_openai, choose, prompt_ref, render_into
from capstan.prompts.snapshot import PromptEntry, PromptIndex, RunningExperiment, ServedVersion
from capstan.prompts.variables import parse_variables

CALLS = int(os.environ.get("BENCH_PROMPT_CALLS", "20000"))
DURATION_S = float(os.environ.get("BENCH_DURATION_S", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
BUDGET_US = 100.0

NAME = "support-reply"
VARIABLES = {"product": "Ledger", "tier": "pro"}
SOURCE: dict[str, Any] = {
    "name": NAME,
    "model": targets.MODEL,
    "params": {"temperature": 0.2, "max_tokens": 64},
    "variables": {"product": "string", "tier": {"type": "string", "enum": ["free", "pro"]}},
    "messages": [
        {
            "role": "system",
            "content": "You answer questions about {{ product }} for {{ tier }} customers. "
            "Be brief, cite the manual, and never guess.",
        },
        {"role": "user", "content": "I am a {{ tier }} customer of {{ product }}."},
    ],
}
QUESTION = {"role": "user", "content": "How do I export my ledger to CSV?"}
RENDERED = [
    {
        "role": "system",
        "content": "You answer questions about Ledger for pro customers. "
        "Be brief, cite the manual, and never guess.",
    },
    {"role": "user", "content": "I am a pro customer of Ledger."},
    QUESTION,
]


def _index(experiment: bool) -> PromptIndex:
    prompt_id = uuid.uuid4()
    versions = {
        (prompt_id, n): ServedVersion(
            NAME,
            n,
            compile_prompt(messages=SOURCE["messages"]),
            targets.MODEL,
            MappingProxyType(SOURCE["params"]),
            parse_variables(SOURCE["variables"]),
        )
        for n in (1, 2)
    }
    running = {}
    if experiment:
        exp_id = uuid.uuid4()
        variants = (Variant(1, 50), Variant(2, 50))
        running["production"] = RunningExperiment(exp_id, str(exp_id), variants, "user")
    entry = PromptEntry(
        prompt_id, NAME, 2, MappingProxyType({"production": 1}), MappingProxyType(running)
    )
    return PromptIndex(MappingProxyType({NAME: entry}), MappingProxyType(versions))


def in_process(experiment: bool) -> tuple[float, float]:
    """p50 and p99 in µs of the request path's prompt work, one call at a time."""
    index = _index(experiment)
    org = uuid.uuid4()
    principal = Principal(
        "key:bench", Role.SERVICE, ScopePath(org), uuid.uuid4(), None, uuid.uuid4()
    )
    headers: dict[str, str] = {}
    samples: list[float] = []
    raw = orjson.dumps({"prompt": {"name": NAME, "variables": VARIABLES}, "messages": [QUESTION]})
    for n in range(CALLS + 2000):
        body = orjson.loads(raw)
        record = CallRecord("chat.completions", "bench", org)
        started = time.perf_counter_ns()
        ref = prompt_ref(body, None)
        assert ref is not None
        choice = choose(index, ref, principal, headers)
        assert choice.served is not None
        render_into(body, choice.served, ref.variables, apply_openai, record, choice.experiment)
        elapsed = time.perf_counter_ns() - started
        if n >= 2000:
            samples.append(elapsed / 1000)
    assert body["messages"] == RENDERED, body["messages"]
    samples.sort()
    return samples[len(samples) // 2], samples[int(len(samples) * 0.99)]


def _push_prompt(home: targets.CapstanHome, folder: Path) -> None:
    """The prompt, pushed and labelled through the CLI, like an operator would."""
    import yaml

    source = folder / "prompt.yaml"
    source.write_text(yaml.safe_dump(SOURCE, sort_keys=False))
    for args in (["push", str(source)], ["label", NAME, "production", "1"]):
        done = subprocess.run(
            [targets.CAPSTAN, "prompts", *args], env=home.env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"capstan prompts {args[0]}: {done.stdout}{done.stderr}")


def end_to_end() -> dict[str, list[float]]:
    """p50 (ms) of each round at c1, for the plain and the prompt-named body."""
    bodies = {
        "plain": orjson.dumps(
            {"model": targets.MODEL, "messages": RENDERED, "temperature": 0.2, "max_tokens": 64}
        ),
        "prompt": orjson.dumps(
            {"prompt": {"name": NAME, "variables": VARIABLES}, "messages": [QUESTION]}
        ),
    }
    p50s: dict[str, list[float]] = {name: [] for name in bodies}
    with (
        tempfile.TemporaryDirectory(prefix="bench-prompts-") as folder,
        standin(free_port()) as upstream,
    ):
        home = targets.capstan_home(Path(folder), upstream)
        _push_prompt(home, Path(folder))
        start = targets.capstan(home)
        assert not isinstance(start, targets.Skipped)
        with start() as target:
            targets.check(target)
            for body in bodies.values():  # warm-up
                loadgen.wrk(
                    target.url, body, target.headers, duration_s=2, connections=1, threads=1
                )
            for _ in range(ROUNDS):
                for name, body in bodies.items():
                    result = loadgen.wrk(
                        target.url,
                        body,
                        target.headers,
                        duration_s=DURATION_S,
                        connections=1,
                        threads=1,
                    )
                    if result.errors:
                        raise RuntimeError(f"{name}: {result.errors} errors")
                    p50s[name].append(result.p50_ms)
    return p50s


def run() -> None:
    print("prompts: resolution and rendering on the request path")
    for experiment in (False, True):
        p50, p99 = in_process(experiment)
        what = "label + experiment variant" if experiment else "label"
        print(
            f"  in process, {what:<26} p50 {p50:6.1f} µs   p99 {p99:6.1f} µs   "
            f"(budget p50 {BUDGET_US:.0f} µs)"
        )
    p50s = end_to_end()
    plain, prompt = statistics.median(p50s["plain"]), statistics.median(p50s["prompt"])
    rounds = "  ".join(
        f"{a * 1000:.0f}/{b * 1000:.0f}" for a, b in zip(p50s["plain"], p50s["prompt"], strict=True)
    )
    print(
        f"  end to end, c1 p50: plain {plain * 1000:.0f} µs, prompt {prompt * 1000:.0f} µs, "
        f"added {(prompt - plain) * 1000:.0f} µs (rounds plain/prompt µs: {rounds})"
    )


if __name__ == "__main__":
    run()
