"""The reference for in-house model serving: a minimal FastAPI + onnxruntime server, what a
team would write by hand. It takes the same OIP tensor request as Capstan, with no auth, no
validation beyond numpy's, no request event.

`python -m bench.fastapi_onnx MODEL.onnx PORT`
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import ORJSONResponse


def build(model_path: str) -> FastAPI:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    app = FastAPI()

    @app.get("/v2/health/ready")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> ORJSONResponse:
        body: dict[str, Any] = await request.json()
        feed = {
            i["name"]: np.asarray(i["data"], dtype=np.float32).reshape(i["shape"])
            for i in body["inputs"]
        }
        results = session.run(outputs, feed)
        return ORJSONResponse(
            {
                "model_name": name,
                "outputs": [
                    {
                        "name": n,
                        "shape": list(r.shape),
                        "datatype": "FP32" if r.dtype == np.float32 else "INT64",
                        "data": r.ravel().tolist(),
                    }
                    for n, r in zip(outputs, results, strict=True)
                ],
            }
        )

    return app


if __name__ == "__main__":
    uvicorn.run(
        build(sys.argv[1]),
        host="127.0.0.1",
        port=int(sys.argv[2]),
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
