"""The Open Inference Protocol v2 on the data plane: health, model metadata and readiness, and
inference in the tensor form or the records form.

`{name}` may carry an alias (`credit-risk@champion`); `/versions/{v}` names a version. Every
inference is a request event whose id is the prediction id the response returns (`id`), so
ground truth sent later to `POST /api/v1/feedback` links to it. Errors are OIP's
`{"error": "…"}`, naming the input and the problem.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from capstan.gateway.edge import (
    authenticate,
    dialect_endpoint,
    gateway_of,
    json_response,
    read_json_body,
)
from capstan.gateway.errors import GatewayError
from capstan.gateway.recording import CallRecord
from capstan.registry.storage import ArtifactTampered
from capstan.serving.index import ServableModel, ServableVersion

PLATFORMS = {
    "onnx": "onnxruntime_onnx",
    "sklearn": "sklearn_skops",
    "xgboost": "xgboost_native",
    "lightgbm": "lightgbm_native",
}
PROVIDER = "capstan-registry"
T = TypeVar("T")


def oip_error(error: GatewayError) -> dict[str, Any]:
    return {"error": error.message}


async def _version(request: Request) -> ServableVersion:
    """The version the path names: `{name}[@alias]` and an optional `/versions/{v}`."""
    return (await _model_version(request))[1]


async def _model_version(request: Request) -> tuple[ServableModel, ServableVersion]:
    gateway = gateway_of(request)
    table = await gateway.routing_table()
    name, _, alias = request.path_params["model"].partition("@")
    ref = request.path_params.get("version") or alias or None
    model = table.models.models.get(name)
    if model is None:
        raise GatewayError(404, f"unknown model `{name}`", code="model_not_found")
    version = model.resolve(ref)
    if version is None:
        what = f"version `{ref}`" if ref else "a servable version"
        raise GatewayError(404, f"model `{name}` has no {what}", code="model_not_found")
    return model, version


async def live(request: Request) -> Response:
    return json_response({"live": True})


async def ready(request: Request) -> Response:
    gateway = gateway_of(request)
    is_ready = gateway.started and gateway.table is not None
    return json_response({"ready": is_ready}, status=200 if is_ready else 503)


async def metadata(request: Request, record: CallRecord) -> Response:
    from capstan.serving.oip import model_metadata  # numpy: loaded by the first model call

    await authenticate(gateway_of(request).services, request)
    model, version = await _model_version(request)
    body = model_metadata(
        version.name,
        [str(n) for n in sorted(model.versions)],
        PLATFORMS[version.flavor],
        version.signature,
    )
    return json_response(body)


async def model_ready(request: Request, record: CallRecord) -> Response:
    gateway = gateway_of(request)
    await authenticate(gateway.services, request)
    version = await _version(request)
    await _loaded(gateway.models.model(version), version)  # ready means loaded
    return json_response({"name": version.name, "ready": True})


async def infer(request: Request, record: CallRecord) -> Response:
    from capstan.serving.oip import OipError, encode_infer, encode_records, parse_infer

    gateway = gateway_of(request)
    principal = await authenticate(gateway.services, request)
    record.principal = principal
    body, _ = await read_json_body(request, gateway.settings.max_body_bytes)
    record.request_body = body
    record.model = request.path_params["model"][:200]
    version = await _version(request)
    record.deployment = f"{version.name}@{version.version}"
    record.provider = PROVIDER
    record.upstream_model = version.name
    record.attempts = 1
    try:
        parsed = parse_infer(body, version.signature)
    except OipError as exc:
        raise GatewayError(exc.status, exc.message, code="invalid_input") from exc
    outputs = await _loaded(gateway.models.predict(version, parsed.inputs), version)
    if record.keeps_payloads:  # the project logs payloads: the outputs go on the event
        record.answered({name: value.tolist() for name, value in outputs.items()})
    if parsed.records:
        payload = encode_records(outputs, record.id)
    else:
        # The spec returns the client's own `id`; the prediction id, which ground truth is
        # sent against, is in `parameters` (and `x-capstan-request-id`) either way.
        payload = encode_infer(
            version.name,
            str(version.version),
            parsed.id or record.id,
            outputs,
            requested=parsed.outputs,
            parameters={"prediction_id": record.id},
        )
    return Response(
        payload,
        media_type="application/json",
        headers={
            "x-capstan-request-id": record.id,
            "x-capstan-model-version": str(version.version),
        },
    )


async def _loaded(work: Awaitable[T], version: ServableVersion) -> T:
    """`work`, with a tampered artifact turned into a refusal the client can read."""
    try:
        return await work
    except ArtifactTampered as exc:
        raise GatewayError(
            503,
            f"the artifact of {version.name} v{version.version} failed its integrity check "
            "(SHA-256); it is not served",
            code="artifact_tampered",
        ) from exc


def _oip(handler: Any, route: str | None) -> Any:
    return dialect_endpoint(route, handler, oip_error)


routes = [
    Route("/v2/health/live", live, methods=["GET"]),
    Route("/v2/health/ready", ready, methods=["GET"]),
    Route("/v2/models/{model}", _oip(metadata, None), methods=["GET"]),
    Route("/v2/models/{model}/versions/{version}", _oip(metadata, None), methods=["GET"]),
    Route("/v2/models/{model}/ready", _oip(model_ready, None), methods=["GET"]),
    Route("/v2/models/{model}/versions/{version}/ready", _oip(model_ready, None), methods=["GET"]),
    Route("/v2/models/{model}/infer", _oip(infer, "infer"), methods=["POST"]),
    Route("/v2/models/{model}/versions/{version}/infer", _oip(infer, "infer"), methods=["POST"]),
]
