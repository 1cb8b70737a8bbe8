"""The simulator's Google Gemini API (Generative Language API, `v1beta`, also `v1` for POSTs).

Routes, as Google serves them under `https://generativelanguage.googleapis.com`:
`POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent` (`?alt=sse` gives
`data: {...}\\r\\n\\r\\n` events; without it, one JSON array written element by element),
`:countTokens`, `:embedContent`, `:batchEmbedContents`; `GET /v1beta/models` and
`GET /v1beta/models/{model}`. The key comes in `x-goog-api-key` or `?key=`.

Errors follow Google, not the other vendors: a missing key is 403 PERMISSION_DENIED, a rejected
key 400 INVALID_ARGUMENT with reason `API_KEY_INVALID` (Google never answers 401 to an API key),
a model named `unknown-*` 404 NOT_FOUND, a 429 RESOURCE_EXHAUSTED carries its wait only in the
body (`google.rpc.RetryInfo.retryDelay`, no Retry-After header), 500 INTERNAL, 503 UNAVAILABLE.
JSON bodies are pretty-printed with two spaces, as Google's are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from capstan.testing.simulator.common import (
    paced_stream,
    presented_credential,
    read_json,
    rejected,
)
from capstan.testing.simulator.gemini_replies import (
    Candidate,
    InvalidArgument,
    Reply,
    candidate_json,
    embedding,
    fields,
    generate,
    read_prompt,
)
from capstan.testing.simulator.ids import URL_SAFE, random_id
from capstan.testing.simulator.state import InjectedFailure, SimulatorState

JSON_TYPE = "application/json; charset=UTF-8"
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
FAULT_MESSAGES = {
    429: "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "The request timed out. Please try again.",
}
KEY_INVALID = "API key not valid. Please pass a valid API key."
UNREGISTERED = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API key or other form of API consumer identity to call this API."
)
CATALOG = (
    ("gemini-2.5-pro", "Gemini 2.5 Pro", 1048576, 65536, True),
    ("gemini-2.5-flash", "Gemini 2.5 Flash", 1048576, 65536, True),
    ("gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", 1048576, 65536, True),
    ("gemini-2.0-flash", "Gemini 2.0 Flash", 1048576, 8192, False),
    ("gemini-embedding-001", "Gemini Embedding 001", 2048, 1, False),
    ("text-embedding-004", "Text Embedding 004", 2048, 1, False),
)
GENERATE_FIELDS = frozenset(
    (
        "model",
        "contents",
        "tools",
        "toolConfig",
        "safetySettings",
        "systemInstruction",
        "generationConfig",
        "cachedContent",
        "serviceTier",
        "store",
        "labels",
    )
)
GENERATION_CONFIG_FIELDS = frozenset(
    (
        "stopSequences",
        "responseMimeType",
        "responseSchema",
        "responseJsonSchema",
        "responseModalities",
        "candidateCount",
        "maxOutputTokens",
        "temperature",
        "topP",
        "topK",
        "seed",
        "presencePenalty",
        "frequencyPenalty",
        "responseLogprobs",
        "logprobs",
        "enableEnhancedCivicAnswers",
        "speechConfig",
        "thinkingConfig",
        "imageConfig",
        "mediaResolution",
        "audioTimestamp",
    )
)

Handler = Callable[[str, dict[str, Any], Request], Awaitable[Response]]


def routes(state: SimulatorState) -> list[BaseRoute]:
    api = GeminiApi(state)
    return [
        Route("/v1beta/models", api.list_models, methods=["GET"]),
        Route("/v1beta/models/{name}", api.get_model, methods=["GET"]),
        Route("/v1beta/models/{name}", api.call, methods=["POST"]),
        Route("/v1/models/{name}", api.call, methods=["POST"]),
    ]


def google_error(code: int, message: str, details: list[dict[str, Any]] | None = None) -> Response:
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "status": STATUS_NAMES.get(code, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return _json({"error": error}, code)


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_INDENT_2), status, media_type=JSON_TYPE)


def _auth_error(request: Request) -> Response | None:
    credential = presented_credential(request, "x-goog-api-key")
    if credential is None:
        return google_error(403, UNREGISTERED)
    if not rejected(credential):
        return None
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }
    localized = {
        "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
        "locale": "en-US",
        "message": KEY_INVALID,
    }
    return google_error(400, KEY_INVALID, [info, localized])


def _fault(failure: InjectedFailure) -> Response:
    status = failure.status
    details = None
    if status == 429:
        details = [
            {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": f"{failure.retry_after_s:g}s",
            }
        ]
    message = FAULT_MESSAGES.get(status, f"Simulated failure with status {status}.")
    return google_error(status, message, details)


class GeminiApi:
    """The endpoints over one simulator state (faults, request log, prompt cache)."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state
        self.methods: dict[str, Handler] = {
            "generateContent": self.generate_content,
            "streamGenerateContent": self.stream_generate_content,
            "countTokens": self.count_tokens,
            "embedContent": self.embed_content,
            "batchEmbedContents": self.batch_embed_contents,
        }

    async def call(self, request: Request) -> Response:
        model, _, method = request.path_params["name"].rpartition(":")
        body = await read_json(request, self.state)
        handler = self.methods.get(method)
        if not model or handler is None:
            return google_error(404, f"Method not found: {method}.")
        denied = _auth_error(request)
        if denied is not None:
            return denied
        if model.startswith("unknown-"):
            version = request.url.path.split("/")[1]
            return google_error(
                404,
                f"models/{model} is not found for API version {version}, or is not supported "
                f"for {method}. Call ListModels to see the list of available models and their "
                "supported methods.",
            )
        if not isinstance(body, dict):
            return google_error(400, "Invalid JSON payload received. Expected an object.")
        failure = await self.state.before_response(model)
        if failure is not None:
            return _fault(failure)
        try:
            return await handler(model, body, request)
        except InvalidArgument as exc:
            return google_error(400, exc.message)

    async def generate_content(self, model: str, body: dict[str, Any], _: Request) -> Response:
        reply = self._generate(model, body)
        return _json(_response(reply, model, _response_id()))

    async def stream_generate_content(
        self, model: str, body: dict[str, Any], request: Request
    ) -> Response:
        reply = self._generate(model, body)
        chunks = _stream_chunks(reply, model, _response_id())
        sse = request.query_params.get("alt") == "sse"
        frames = paced_stream(self.state, model, _stream_frames(chunks, sse=sse))
        return StreamingResponse(frames, media_type="text/event-stream" if sse else JSON_TYPE)

    def _generate(self, model: str, body: dict[str, Any]) -> Reply:
        request = fields(body)
        _reject_unknown(request, GENERATE_FIELDS, "")
        config = fields(request.get("generationConfig"))
        _reject_unknown(config, GENERATION_CONFIG_FIELDS, " at 'generation_config'")
        window = self.state.faults_for(model).context_window
        return generate(model, request, self.state.prompt_cache, window)

    async def count_tokens(self, model: str, body: dict[str, Any], _: Request) -> Response:
        request = fields(body)
        inner = fields(request.get("generateContentRequest"))
        if inner:
            prompt = read_prompt(inner, where="CountTokensRequest.generate_content_request")
        else:
            prompt = read_prompt(request, where="CountTokensRequest")
        details = [{"modality": "TEXT", "tokenCount": prompt.text_tokens}]
        if prompt.images:
            details.append({"modality": "IMAGE", "tokenCount": prompt.tokens - prompt.text_tokens})
        return _json({"totalTokens": prompt.tokens, "promptTokensDetails": details})

    async def embed_content(self, model: str, body: dict[str, Any], _: Request) -> Response:
        values = _embed_one(model, fields(body), "EmbedContentRequest")
        return _json({"embedding": {"values": values}})

    async def batch_embed_contents(self, model: str, body: dict[str, Any], _: Request) -> Response:
        requests = fields(body).get("requests")
        if not isinstance(requests, list) or not requests:
            raise InvalidArgument("* BatchEmbedContentsRequest.requests: requests is required\n")
        embeddings, tokens = [], 0
        for i, raw in enumerate(requests):
            item = fields(raw)
            where = f"BatchEmbedContentsRequest.requests[{i}]"
            if item.get("model") not in (f"models/{model}", None):
                raise InvalidArgument(
                    f"* {where}.model: the model of every request must be the batch's "
                    f"model, models/{model}.\n"
                )
            embeddings.append({"values": _embed_one(model, item, where)})
            tokens += len(_embed_text(item).split())
        usage = {"promptTokenCount": tokens, "totalTokenCount": tokens}
        return _json({"embeddings": embeddings, "usageMetadata": usage})

    async def list_models(self, request: Request) -> Response:
        if (denied := _auth_error(request)) is not None:
            return denied
        size = int(request.query_params.get("pageSize") or 50)
        start = int(request.query_params.get("pageToken") or 0)
        page: dict[str, Any] = {"models": [_model_json(*m) for m in CATALOG[start : start + size]]}
        if start + size < len(CATALOG):
            page["nextPageToken"] = str(start + size)
        return _json(page)

    async def get_model(self, request: Request) -> Response:
        if (denied := _auth_error(request)) is not None:
            return denied
        name = request.path_params["name"]
        if name.startswith("unknown-"):
            return google_error(404, f"models/{name} is not found for API version v1beta")
        known = next((m for m in CATALOG if m[0] == name), None)
        return _json(_model_json(*(known or (name, name, 1048576, 8192, False))))


def _reject_unknown(obj: dict[str, Any], known: frozenset[str], where: str) -> None:
    """Google refuses any field it does not know: this catches adapters that misspell one."""
    for name in obj:
        if name not in known:
            raise InvalidArgument(
                f'Invalid JSON payload received. Unknown name "{name}"{where}: Cannot find field.'
            )


def _embed_text(item: dict[str, Any]) -> str:
    parts = fields(item.get("content")).get("parts") or []
    return " ".join(str(fields(p).get("text", "")) for p in parts)


def _embed_one(model: str, item: dict[str, Any], where: str) -> list[float]:
    if not fields(item.get("content")).get("parts"):
        raise InvalidArgument(f"* {where}.content: content is not specified\n")
    dimensions = item.get("outputDimensionality")
    return embedding(model, _embed_text(item), int(dimensions) if dimensions else None)


def _response_id() -> str:
    return random_id(22, URL_SAFE)


def _response(reply: Reply, model: str, response_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if reply.candidates:
        body["candidates"] = [candidate_json(c, i) for i, c in enumerate(reply.candidates)]
    if reply.prompt_feedback:
        body["promptFeedback"] = reply.prompt_feedback
    body.update(usageMetadata=reply.usage, modelVersion=model, responseId=response_id)
    return body


def _stream_chunks(reply: Reply, model: str, response_id: str) -> list[dict[str, Any]]:
    """One chunk per piece (a word, a thought, a function call); every candidate's pieces are
    interleaved by position. Usage in every chunk, complete only in the last, as Google does."""
    if not reply.candidates:
        return [_response(reply, model, response_id)]
    length = max(1, *(len(c.pieces) for c in reply.candidates))
    partial_usage = {k: v for k, v in reply.usage.items() if k != "candidatesTokenCount"}
    thoughts = reply.usage.get("thoughtsTokenCount", 0)
    partial_usage["totalTokenCount"] = reply.usage["promptTokenCount"] + thoughts
    chunks = []
    for k in range(length):
        entries = [
            _stream_entry(c, i, k) for i, c in enumerate(reply.candidates) if _has_entry(c, k)
        ]
        usage = reply.usage if k == length - 1 else partial_usage
        chunks.append(
            {
                "candidates": entries,
                "usageMetadata": usage,
                "modelVersion": model,
                "responseId": response_id,
            }
        )
    return chunks


def _stream_frames(chunks: list[dict[str, Any]], *, sse: bool) -> Iterator[tuple[bool, bytes]]:
    """`(paced, frame)` pairs: every chunk is paced; SSE events with `?alt=sse`, else the
    elements of one JSON array."""
    for index, chunk in enumerate(chunks):
        if sse:
            yield True, b"data: " + orjson.dumps(chunk) + b"\r\n\r\n"
        else:
            head = b"[" if index == 0 else b",\r\n"
            yield True, head + orjson.dumps(chunk, option=orjson.OPT_INDENT_2) + b"\n"
    if not sse:
        yield False, b"]"


def _has_entry(candidate: Candidate, k: int) -> bool:
    return k < len(candidate.pieces) or (k == 0 and not candidate.pieces)


def _stream_entry(candidate: Candidate, index: int, k: int) -> dict[str, Any]:
    pieces = candidate.pieces[k : k + 1]
    final = k >= len(candidate.pieces) - 1
    return candidate_json(candidate, index, pieces, final=final)


def _model_json(
    name: str, display: str, input_limit: int, output_limit: int, thinking: bool
) -> dict[str, Any]:
    embedding_model = "embedding" in name
    methods = (
        ["embedContent", "batchEmbedContents", "countTokens"]
        if embedding_model
        else ["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"]
    )
    model: dict[str, Any] = {
        "name": f"models/{name}",
        "version": "001",
        "displayName": display,
        "description": f"{display} (simulated).",
        "inputTokenLimit": input_limit,
        "outputTokenLimit": output_limit,
        "supportedGenerationMethods": methods,
    }
    if not embedding_model:
        model.update(temperature=1, topP=0.95, topK=64, maxTemperature=2)
    if thinking:
        model["thinking"] = True
    return model
