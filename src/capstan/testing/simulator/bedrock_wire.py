"""The simulator's AWS Bedrock Runtime: Converse, ConverseStream and InvokeModel (Titan embeddings).

Routes (`modelId` may be URL-encoded, as ARNs and inference-profile ids are):
- `POST /model/{modelId}/converse`: JSON in, JSON out;
- `POST /model/{modelId}/converse-stream`: binary event-stream frames (`bedrock_eventstream`);
- `POST /model/{modelId}/invoke`: Titan text-embedding models only (`amazon.titan-embed-*`).

Authentication is checked the way AWS checks it, minus the cryptography: a SigV4
`Authorization: AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/bedrock/aws4_request, ...`
header (or a Bedrock API key as `Bearer`) must be present and well formed, scoped to the
`bedrock` service, and its access key must not start with `bad`. The signature itself is NOT
verified: the simulator does not know the secret key, so a wrong signature passes here where AWS
would answer 403 SignatureDoesNotMatch. (Capstan's adapter tests verify signatures separately.)

Checks run in this order: credentials, the model id (ids starting `unknown-` are 404
ResourceNotFoundException), the body (400 ValidationException), the `context_window` fault
("Input is too long for requested model."), then the other faults by status (429 is
ThrottlingException, 503 ServiceUnavailableException, ...). Model ids starting `stream-error-`
stream one delta, then a `modelStreamErrorException` frame. Errors are `{"message": ...}` bodies
named by the `x-amzn-ErrorType` header, as AWS sends them; no `Retry-After`, as AWS sends none.
Prompt caching uses the state's shared `PromptCache` (keys prefixed `bedrock:`).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from capstan.testing.simulator.bedrock_eventstream import (
    CONTENT_TYPE,
    event_frame,
    exception_frame,
)
from capstan.testing.simulator.bedrock_reply import (
    ConverseCall,
    ConverseValidationError,
    Reply,
    parse_call,
    plan_reply,
)
from capstan.testing.simulator.common import paced_stream, read_json, rejected
from capstan.testing.simulator.embeddings import gaussian_vector
from capstan.testing.simulator.prompt_cache import PromptCache
from capstan.testing.simulator.state import SimulatorState
from capstan.testing.simulator.text import count_tokens

UNKNOWN_MODEL_PREFIX = "unknown-"
STREAM_ERROR_PREFIX = "stream-error-"
TITAN_DIMENSIONS = (256, 512, 1024)

_SIGV4 = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<key>[^/\s,]+)/(?P<date>\d{8})/(?P<region>[^/\s,]+)/"
    r"(?P<service>[^/\s,]+)/aws4_request,\s*SignedHeaders=[a-z0-9\-;]+,\s*Signature=[0-9a-f]{64}$"
)
_EXCEPTIONS: dict[int, tuple[str, str]] = {
    400: ("ValidationException", "The request is invalid."),
    403: ("AccessDeniedException", "You don't have access to the model with the specified ID."),
    404: ("ResourceNotFoundException", "The provided model identifier is invalid."),
    408: ("ModelTimeoutException", "Model has timed out in processing the request."),
    424: ("ModelErrorException", "The model returned an error."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "The server encountered an internal error."),
    503: ("ServiceUnavailableException", "Bedrock is unable to process your request."),
}

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A Converse call that passed every check: what to answer, and its usage."""

    call: ConverseCall
    reply: Reply
    usage: dict[str, int]


def usage_of(call: ConverseCall, output_tokens: int, cache: PromptCache) -> dict[str, int]:
    """Bedrock's `usage`; `inputTokens` excludes the tokens read from or written to the cache.
    A cache-point prefix seen before is a cache read, a new one a cache write."""
    read = write = 0
    if call.cache_key is not None and call.cached_tokens:
        read = cache.longest_seen([(call.cache_key, call.cached_tokens)])
        write = call.cached_tokens - read
    return {
        "inputTokens": call.input_tokens - read - write,
        "outputTokens": output_tokens,
        "totalTokens": call.input_tokens + output_tokens,
        "cacheReadInputTokens": read,
        "cacheWriteInputTokens": write,
    }


def routes(state: SimulatorState) -> list[BaseRoute]:
    return [
        Route("/model/{model_id:path}/converse", _converse(state), methods=["POST"]),
        Route("/model/{model_id:path}/converse-stream", _converse_stream(state), methods=["POST"]),
        Route("/model/{model_id:path}/invoke", _invoke(state), methods=["POST"]),
    ]


def aws_error(error_type: str, message: str, status: int) -> Response:
    """An AWS JSON-protocol error: botocore reads the code from `x-amzn-ErrorType`."""
    return JSONResponse(
        {"message": message},
        status_code=status,
        headers={"x-amzn-ErrorType": error_type, "x-amzn-RequestId": str(uuid.uuid4())},
    )


def error_for_status(status: int) -> Response:
    """The exception Bedrock sends with `status`, for faults injected by status code."""
    name, message = _EXCEPTIONS.get(
        status, ("InternalServerException" if status >= 500 else "ValidationException", "Error.")
    )
    return aws_error(name, message, status)


def auth_failure(request: Request) -> Response | None:
    """AWS's answer to missing, malformed, mis-scoped or unknown credentials; None when they
    pass. The signature is not verified (see the module docstring)."""
    header = request.headers.get("authorization")
    if not header:
        return aws_error("MissingAuthenticationTokenException", "Missing Authentication Token", 403)
    if header.startswith("Bearer "):
        if rejected(header.removeprefix("Bearer ").strip() or None):
            return _unrecognized()
        return None
    match = _SIGV4.match(header)
    if match is None or not request.headers.get("x-amz-date"):
        return aws_error(
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' "
            "parameters and an 'X-Amz-Date' header.",
            403,
        )
    if match["service"] != "bedrock":
        return aws_error(
            "InvalidSignatureException",
            "Credential should be scoped to correct service: 'bedrock'.",
            403,
        )
    if rejected(match["key"]):
        return _unrecognized()
    return None


def _unrecognized() -> Response:
    return aws_error(
        "UnrecognizedClientException", "The security token included in the request is invalid.", 403
    )


async def _admit(request: Request, state: SimulatorState) -> tuple[str, Any, Response | None]:
    """Read and log the body, then check the credentials and the model id, as AWS does first."""
    body = await read_json(request, state)
    model = str(request.path_params["model_id"])
    failure = auth_failure(request)
    if failure is None and model.rsplit("/", 1)[-1].startswith(UNKNOWN_MODEL_PREFIX):
        failure = error_for_status(404)
    return model, body, failure


async def _prepare(request: Request, state: SimulatorState) -> Response | Prepared:
    """Everything before the answer: admission, validation, the context window, then the
    injected faults; an error response, or the call, its reply and its usage."""
    model, body, failure = await _admit(request, state)
    if failure is not None:
        return failure
    try:
        call = parse_call(model, body)
    except ConverseValidationError as exc:
        return aws_error("ValidationException", exc.message, 400)
    window = state.faults_for(model).context_window
    if window is not None and call.input_tokens > window:
        return aws_error("ValidationException", "Input is too long for requested model.", 400)
    injected = await state.before_response(model)
    if injected is not None:
        return error_for_status(injected.status)
    reply = plan_reply(call)
    return Prepared(call, reply, usage_of(call, reply.output_tokens, state.prompt_cache))


def _converse(state: SimulatorState) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        started = time.monotonic()
        prepared = await _prepare(request, state)
        if isinstance(prepared, Response):
            return prepared
        blocks = [block.as_json() for block in prepared.reply.blocks]
        content = {
            "output": {"message": {"role": "assistant", "content": blocks}},
            "stopReason": prepared.reply.stop_reason,
            "usage": prepared.usage,
            "metrics": {"latencyMs": _elapsed_ms(started)},
        }
        return JSONResponse(content, headers={"x-amzn-RequestId": str(uuid.uuid4())})

    return endpoint


def _converse_stream(state: SimulatorState) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        started = time.monotonic()
        prepared = await _prepare(request, state)
        if isinstance(prepared, Response):
            return prepared
        return StreamingResponse(
            paced_stream(state, prepared.call.model, _frames(prepared, started)),
            media_type=CONTENT_TYPE,
            headers={"x-amzn-RequestId": str(uuid.uuid4())},
        )

    return endpoint


def _frames(prepared: Prepared, started: float) -> Iterator[tuple[bool, bytes]]:
    """The ConverseStream event sequence as `(paced, frame)` pairs, the deltas paced. Text
    blocks get no `contentBlockStart`, tool blocks do (with their id and name), as Bedrock sends
    them."""
    call, reply = prepared.call, prepared.reply
    yield False, event_frame("messageStart", {"role": "assistant"})
    index = 0  # content deltas sent so far
    for position, block in enumerate(reply.blocks):
        if block.kind == "toolUse":
            start = {"toolUse": {"toolUseId": block.tool_use_id, "name": block.name}}
            yield (
                False,
                event_frame("contentBlockStart", {"start": start, "contentBlockIndex": position}),
            )
        for delta in block.deltas():
            if index == 1 and call.model.startswith(STREAM_ERROR_PREFIX):
                message = "The model stream ended with an error."
                yield True, exception_frame("modelStreamErrorException", message)
                return
            delta_event = {"delta": delta, "contentBlockIndex": position}
            yield True, event_frame("contentBlockDelta", delta_event)
            index += 1
        yield False, event_frame("contentBlockStop", {"contentBlockIndex": position})
    yield False, event_frame("messageStop", {"stopReason": reply.stop_reason})
    metrics = {"latencyMs": _elapsed_ms(started)}  # read when the stream gets here
    yield False, event_frame("metadata", {"usage": prepared.usage, "metrics": metrics})


def _invoke(state: SimulatorState) -> Endpoint:
    """InvokeModel for Titan text embeddings: `{"inputText", "dimensions"?, "normalize"?}`."""

    async def endpoint(request: Request) -> Response:
        model, body, failure = await _admit(request, state)
        if failure is not None:
            return failure
        if "titan-embed" not in model:
            return aws_error(
                "ValidationException",
                "The simulator implements InvokeModel only for Titan text-embedding models.",
                400,
            )
        text = body.get("inputText") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text:
            return aws_error("ValidationException", "inputText must be a non-empty string.", 400)
        dimensions = body.get("dimensions", 1024)
        if dimensions not in TITAN_DIMENSIONS:
            return aws_error("ValidationException", "dimensions must be 256, 512 or 1024.", 400)
        injected = await state.before_response(model)
        if injected is not None:
            return error_for_status(injected.status)
        vector = gaussian_vector(dimensions, model, text, normalize=body.get("normalize", True))
        tokens = count_tokens(text)
        return JSONResponse(
            {
                "embedding": vector,
                "embeddingsByType": {"float": vector},
                "inputTextTokenCount": tokens,
            },
            headers={
                "x-amzn-RequestId": str(uuid.uuid4()),
                "X-Amzn-Bedrock-Input-Token-Count": str(tokens),
            },
        )

    return endpoint


def _elapsed_ms(started: float) -> int:
    return max(1, round((time.monotonic() - started) * 1000))
