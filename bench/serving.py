"""In-house model serving (issue 8): single-row ONNX inference through Capstan's gateway
against onnxruntime called in process, and 1,000-row batches in rows per second, with a
minimal FastAPI + onnxruntime server in the same run as the reference.

The model: a scikit-learn logistic regression on 20 features converted to ONNX (probabilities,
no zipmap), registered through `capstan models register` and called with a `service` key.
Latency is `wrk -t1 -c1` (p50, p99 from wrk's HdrHistogram); batches `wrk -t2 -c4`.
Targets: single row adds at most 1.5 ms p50 over in-process; batches at least 100,000 rows/s.

Environment: BENCH_DURATION_S (10).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

from bench import loadgen, targets
from bench.peers import PEERS
from bench.procs import free_port, server
from bench.standin import standin

DURATION_S = float(os.environ.get("BENCH_DURATION_S", "10"))
FEATURES = 20
BATCH = 1000
ADDED_P50_BUDGET_MS = 1.5
ROWS_PER_S_TARGET = 100_000
NAME = "bench-onnx"


def build_model(folder: Path) -> tuple[Path, np.ndarray]:
    """The ONNX model (what Capstan and the FastAPI reference serve) and, beside it, the same
    scikit-learn model as `model.joblib` (what MLServer's scikit-learn runtime serves)."""
    from skl2onnx import to_onnx  # type: ignore[import-untyped]
    from sklearn.datasets import make_classification  # type: ignore[import-untyped]
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    x, y = make_classification(n_samples=2000, n_features=FEATURES, random_state=3)
    x = x.astype(np.float32)
    model = LogisticRegression(max_iter=500).fit(x, y)
    proto = to_onnx(model, x[:1], options={id(model): {"zipmap": False}})
    path = folder / "model.onnx"
    path.write_bytes(proto.SerializeToString())
    import joblib  # type: ignore[import-untyped]

    joblib.dump(model, folder / "model.joblib")
    return path, x


def mlserver(folder: Path, rows: np.ndarray) -> dict[str, float] | None:
    """MLServer (one worker) serving the scikit-learn model, or None when not installed."""
    peer = PEERS["mlserver"]
    if not peer.installed():
        print(f"  mlserver: not installed ({peer.install_hint()})")
        return None
    models = folder / "mlserver"
    (models / NAME).mkdir(parents=True)
    port = free_port()
    settings = {
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        # In the server process: MLServer 1.7's worker processes die at start on current uvloop
        # ("no current event loop"), and one process is what Capstan and FastAPI run too.
        "parallel_workers": 0,
        "debug": False,
    }
    (models / "settings.json").write_text(orjson.dumps(settings).decode())
    model_settings = {
        "name": NAME,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(folder / "model.joblib")},
    }
    (models / NAME / "model-settings.json").write_text(orjson.dumps(model_settings).decode())
    base = f"http://127.0.0.1:{port}"
    with server(
        [str(peer.bin), "start", str(models)],
        dict(os.environ),
        f"{base}/v2/health/ready",
        "mlserver",
    ):
        return measure(f"{base}/v2/models/{NAME}/infer", {}, rows, input_name="predict")


def in_process(path: Path, rows: np.ndarray, calls: int = 20_000) -> tuple[float, float]:
    """p50 and p99 (ms) of `session.run` on one row, as a caller would do it in process."""
    import onnxruntime as ort  # type: ignore[import-untyped]

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    samples = []
    for n in range(calls):
        row = rows[n % len(rows)][None, :]
        started = time.perf_counter()
        session.run(None, {name: row})
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return samples[len(samples) // 2], samples[int(len(samples) * 0.99)]


def body(rows: np.ndarray, input_name: str = "X") -> bytes:
    return orjson.dumps(
        {
            "inputs": [
                {
                    "name": input_name,
                    "shape": list(rows.shape),
                    "datatype": "FP32",
                    "data": rows.ravel().tolist(),
                }
            ]
        }
    )


def measure(
    url: str, headers: dict[str, str], rows: np.ndarray, *, input_name: str = "X"
) -> dict[str, float]:
    one, batch = body(rows[:1], input_name), body(rows[:BATCH], input_name)
    loadgen.wrk(url, one, headers, duration_s=2, connections=1, threads=1)  # warm-up, load
    single = loadgen.wrk(url, one, headers, duration_s=DURATION_S, connections=1, threads=1)
    many = loadgen.wrk(url, batch, headers, duration_s=DURATION_S, connections=4, threads=2)
    for result in (single, many):
        if result.errors:
            raise RuntimeError(f"{url}: {result.errors} errors")
    return {
        "p50_ms": single.p50_ms,
        "p99_ms": single.p99_ms,
        "rows_per_s": many.requests / many.duration_s * BATCH,
        "batch_p50_ms": many.p50_ms,
    }


def run() -> None:
    print("serving: registry ONNX model through the gateway")
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as folder_name:
        folder = Path(folder_name)
        model, rows = build_model(folder)
        p50, p99 = in_process(model, rows)
        print(f"  onnxruntime in process, 1 row: p50 {p50 * 1000:.0f} µs, p99 {p99 * 1000:.0f} µs")
        results: dict[str, dict[str, float]] = {}
        with standin(free_port()) as upstream:
            home = targets.capstan_home(folder, upstream)
            done = subprocess.run(
                [
                    targets.CAPSTAN,
                    "models",
                    "register",
                    str(model),
                    "--name",
                    NAME,
                    "--flavor",
                    "onnx",
                ],
                env=home.env,
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                raise RuntimeError(f"register failed: {done.stdout}{done.stderr}")
            start = targets.capstan(home)
            assert not isinstance(start, targets.Skipped)
            with start() as target:
                base = target.url.removesuffix("/v1/chat/completions")
                url = f"{base}/v2/models/{NAME}/infer"
                results["capstan"] = measure(url, target.headers, rows)
        port = free_port()
        args = [sys.executable, "-m", "bench.fastapi_onnx", str(model), str(port)]
        root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": root}
        base = f"http://127.0.0.1:{port}"
        with server(args, env, f"{base}/v2/health/ready", "fastapi-onnx"):
            results["fastapi"] = measure(f"{base}/v2/models/{NAME}/infer", {}, rows)
        peer = mlserver(folder, rows)
        if peer is not None:
            results["mlserver"] = peer
    for name, found in results.items():
        print(
            f"  {name:<8} 1 row c1: p50 {found['p50_ms'] * 1000:.0f} µs, "
            f"p99 {found['p99_ms'] * 1000:.0f} µs; {BATCH}-row batches c4: "
            f"{found['rows_per_s']:,.0f} rows/s (p50 {found['batch_p50_ms']:.2f} ms)"
        )
    added = results["capstan"]["p50_ms"] - p50
    verdict = "met" if added <= ADDED_P50_BUDGET_MS else "NOT met"
    print(
        f"  added over in-process, p50: {added:.3f} ms (target <= {ADDED_P50_BUDGET_MS} ms: "
        f"{verdict})"
    )
    rate = results["capstan"]["rows_per_s"]
    verdict = "met" if rate >= ROWS_PER_S_TARGET else "NOT met"
    print(f"  batch throughput: {rate:,.0f} rows/s (target >= {ROWS_PER_S_TARGET:,}: {verdict})")
    for peer_name in ("fastapi", "mlserver"):
        if peer_name in results:
            peer_result = results[peer_name]
            batches = results["capstan"]["rows_per_s"] / peer_result["rows_per_s"]
            single = results["capstan"]["p50_ms"] / peer_result["p50_ms"]
            print(f"  capstan / {peer_name}: batches {batches:.2f}x, single-row p50 {single:.2f}x")


if __name__ == "__main__":
    run()
