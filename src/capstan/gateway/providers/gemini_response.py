"""Gemini API answers, rewritten as OpenAI completions, chunks, embeddings and errors.

Pure functions (and one small per-stream translator object), no I/O. Gemini's `usageMetadata`
maps onto the OpenAI usage contract of `base.py`: thinking tokens count as completion tokens
(they are billed as output) and are also reported as `reasoning_tokens`; implicit-cache hits
(`cachedContentTokenCount`) are part of `prompt_tokens` and reported as `cached_tokens`.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from typing import Any

import orjson

from capstan.gateway.providers.base import (
    ChatChunk,
    ChatCompletion,
    EmbeddingResponse,
    FailureKind,
    UpstreamError,
)
from capstan.gateway.providers.http import failure_kind, upstream_error
from capstan.gateway.providers.openai_shapes import (
    arguments_text,
    assistant_message,
    chat_completion,
    completion_choice,
    completion_chunk,
    embedding_list,
    token_usage,
    tool_call,
    usage_chunk,
)

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "LANGUAGE": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
_CONTEXT_HINT = "exceeds the maximum number of tokens"


def finish_reason(gemini: str | None, called_tools: bool) -> str:
    """OpenAI's finish reason; anything Gemini adds later (OTHER, MALFORMED_FUNCTION_CALL...)
    reads as a plain stop rather than failing the call."""
    mapped = FINISH_REASONS.get(gemini or "STOP", "stop")
    return "tool_calls" if called_tools and mapped == "stop" else mapped


def usage(metadata: Mapping[str, Any]) -> dict[str, Any]:
    prompt = int(metadata.get("promptTokenCount", 0)) + int(
        metadata.get("toolUsePromptTokenCount", 0)
    )
    thoughts = int(metadata.get("thoughtsTokenCount", 0))
    completion = int(metadata.get("candidatesTokenCount", 0)) + thoughts
    return token_usage(
        prompt,
        completion,
        total=int(metadata.get("totalTokenCount") or prompt + completion),
        cached=int(metadata.get("cachedContentTokenCount", 0)),
        reasoning=thoughts,
    )


def _tool_call(call: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI tool call; Gemini's own call id when it sends one, else a fresh `call_` id
    (the request side maps ids back to names, so any unique id works)."""
    return tool_call(
        str(call.get("id") or f"call_{secrets.token_hex(12)}"),
        str(call.get("name", "")),
        arguments_text(call.get("args")),
    )


def completion(body: Mapping[str, Any], *, model: str, created: int) -> ChatCompletion:
    """The OpenAI completion for a `GenerateContentResponse`."""
    candidates = body.get("candidates") or []
    if not candidates:
        raise _no_candidates(body)
    return chat_completion(
        id=_completion_id(body),
        created=created,
        model=body.get("modelVersion") or model,
        choices=[_choice(c, i) for i, c in enumerate(candidates)],
        usage=usage(body.get("usageMetadata") or {}),
    )


def _completion_id(body: Mapping[str, Any]) -> str:
    return f"chatcmpl-{body.get('responseId') or secrets.token_hex(12)}"


def _no_candidates(body: Mapping[str, Any]) -> UpstreamError:
    """Gemini answers a blocked prompt with 200 and no candidates; OpenAI would refuse it."""
    reason = (body.get("promptFeedback") or {}).get("blockReason")
    if reason:
        return UpstreamError(
            FailureKind.CONTENT_POLICY, f"Gemini blocked the prompt (blockReason {reason})"
        )
    return UpstreamError(FailureKind.MALFORMED, "Gemini answered without any candidate")


def _parts(candidate: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list((candidate.get("content") or {}).get("parts") or [])


def _choice(candidate: Mapping[str, Any], position: int) -> dict[str, Any]:
    parts = _parts(candidate)
    text = "".join(str(p["text"]) for p in parts if "text" in p and not p.get("thought"))
    calls = [_tool_call(p["functionCall"]) for p in parts if "functionCall" in p]
    return completion_choice(
        assistant_message(text, calls),
        finish_reason(candidate.get("finishReason"), bool(calls)),
        index=int(candidate.get("index", position)),
        logprobs=logprobs(candidate.get("logprobsResult")),
    )


def logprobs(result: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """`logprobsResult` (chosen tokens, top alternatives per position) in OpenAI's shape."""
    if not result:
        return None
    tops = result.get("topCandidates") or []
    content = []
    for k, chosen in enumerate(result.get("chosenCandidates") or []):
        alternatives = tops[k].get("candidates") or [] if k < len(tops) else []
        content.append({**_token(chosen), "top_logprobs": [_token(a) for a in alternatives]})
    return {"content": content, "refusal": None}


def _token(candidate: Mapping[str, Any]) -> dict[str, Any]:
    token = str(candidate.get("token", ""))
    return {
        "token": token,
        "logprob": float(candidate.get("logProbability", 0.0)),
        "bytes": list(token.encode()),
    }


class StreamTranslator:
    """Turns the `GenerateContentResponse` events of one stream into OpenAI chunks: a role
    chunk when a choice first appears, text and tool-call deltas, a finish chunk per choice;
    `usage_chunk` closes the stream with the last usage Gemini reported."""

    def __init__(self, model: str, created: int) -> None:
        self.model = model
        self.created = created
        self.id = ""
        self.usage: Mapping[str, Any] = {}
        self.tool_calls: dict[int, int] = {}
        self.unfinished: set[int] = set()

    def feed(self, event: Mapping[str, Any]) -> list[ChatChunk]:
        if isinstance(event.get("error"), Mapping):
            raise stream_failure(event["error"])
        self.id = self.id or _completion_id(event)
        self.model = str(event.get("modelVersion") or self.model)
        self.usage = event.get("usageMetadata") or self.usage
        candidates = event.get("candidates") or []
        if not candidates and (event.get("promptFeedback") or {}).get("blockReason"):
            raise _no_candidates(event)
        chunks: list[ChatChunk] = []
        for position, candidate in enumerate(candidates):
            chunks.extend(self._candidate(candidate, position))
        return chunks

    def _candidate(self, candidate: Mapping[str, Any], position: int) -> list[ChatChunk]:
        index = int(candidate.get("index", position))
        chunks = []
        if index not in self.tool_calls:
            self.tool_calls[index] = 0
            self.unfinished.add(index)
            chunks.append(self._chunk(index, {"role": "assistant", "content": ""}))
        lp = logprobs(candidate.get("logprobsResult"))
        for part in _parts(candidate):
            if "text" in part and not part.get("thought"):
                chunks.append(self._chunk(index, {"content": str(part["text"])}, logprobs=lp))
                lp = None
            elif "functionCall" in part:
                delta = {
                    "tool_calls": [
                        {"index": self.tool_calls[index], **_tool_call(part["functionCall"])}
                    ]
                }
                self.tool_calls[index] += 1
                chunks.append(self._chunk(index, delta))
        reason = candidate.get("finishReason")
        if reason:
            self.unfinished.discard(index)
            done = finish_reason(reason, self.tool_calls[index] > 0)
            chunks.append(self._chunk(index, {}, finish_reason=done))
        return chunks

    def _chunk(
        self,
        index: int,
        delta: dict[str, Any],
        *,
        finish_reason: str | None = None,
        logprobs: dict[str, Any] | None = None,
    ) -> ChatChunk:
        return completion_chunk(
            self.id, self.created, self.model, delta, finish_reason, index=index, logprobs=logprobs
        )

    def usage_chunk(self) -> ChatChunk:
        """The last chunk; raises when the stream closed before every choice finished (a
        clean close mid-answer would otherwise pass for a complete, shorter reply)."""
        if self.unfinished or not self.tool_calls:
            raise UpstreamError(
                FailureKind.MALFORMED, "the Gemini stream ended before the answer finished"
            )
        return usage_chunk(self.id, self.created, self.model, usage(self.usage))


def stream_failure(error: Mapping[str, Any]) -> UpstreamError:
    """An error Gemini sends as an event after the stream started."""
    code = int(error.get("code") or 500)
    message = str(error.get("message") or "the Gemini stream failed")
    return UpstreamError(failure_kind(code, message), message, status=code)


def upstream_failure(status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
    """A Gemini error response as `UpstreamError`. Beyond the generic mapping: Google answers a
    bad key with 400 `API_KEY_INVALID` and a missing one with 403, both our credentials, so
    AUTHENTICATION; it states the wait of a 429 only in the body (`RetryInfo.retryDelay`)."""
    error = upstream_error(status, body, headers)
    details = _error_details(body)
    reasons = {str(d.get("reason")) for d in details}
    lowered = error.message.lower()
    bad_key = "API_KEY_INVALID" in reasons or (status == 400 and "api key" in lowered)
    if bad_key or (status == 403 and "unregistered callers" in lowered):
        error.kind = FailureKind.AUTHENTICATION
    elif status == 400 and _CONTEXT_HINT in lowered:
        error.kind = FailureKind.CONTEXT_LENGTH
    if error.retry_after is None:
        error.retry_after = retry_delay(details)
    return error


def _error_details(body: bytes) -> list[Mapping[str, Any]]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    if isinstance(data, list) and data:
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def retry_delay(details: list[Mapping[str, Any]]) -> float | None:
    """Seconds from a `google.rpc.RetryInfo` detail (`"38s"`, `"58.934310785s"`)."""
    for detail in details:
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            try:
                return float(str(detail.get("retryDelay", "")).removesuffix("s"))
            except ValueError:
                return None
    return None


def embeddings(
    body: Mapping[str, Any], texts: list[str], *, model: str, encoding_format: str | None
) -> EmbeddingResponse:
    """OpenAI's embeddings list. Vectors are base64 of little-endian float32 when asked (the
    openai SDK asks by default). Gemini may omit token counts for embeddings; then they are
    estimated at four characters a token, Google's own rule of thumb, so costs stay nonzero."""
    vectors = [list(e.get("values") or []) for e in body.get("embeddings") or []]
    if len(vectors) != len(texts):
        raise UpstreamError(FailureKind.MALFORMED, "Gemini returned the wrong number of embeddings")
    tokens = (body.get("usageMetadata") or {}).get("promptTokenCount")
    if tokens is None:
        tokens = sum(math.ceil(len(t) / 4) for t in texts)
    return embedding_list(
        vectors, model=model, tokens=int(tokens), encoding_format=encoding_format or "float"
    )
