"""Cohere API v2 as the simulator speaks it: `POST /v2/chat` (JSON or typed SSE) and
`POST /v2/embed`, with Bearer auth and Cohere's `{"message": ...}` error bodies.

The shapes follow the official SDK's types (`cohere.v2.types.V2ChatResponse`,
`V2ChatStreamResponse`, `EmbedByTypeResponse`), so `cohere.ClientV2` parses every answer into
its typed models. Streams carry an `event:` line naming the type, repeat it as `"type"` inside
the data, and end with `data: [DONE]`, as the SDK's reader expects.

Usage: `billed_units` counts the words of the messages; `tokens.input_tokens` adds
`PROMPT_TEMPLATE_TOKENS`, the way Cohere's own prompt template makes `tokens` exceed what it
bills, so an adapter can be seen choosing the right one; `cached_tokens` counts the words of a
message prefix an earlier request already sent. The `context_window` fault refuses longer
prompts with Cohere's "too many tokens" 400.
"""

from __future__ import annotations

import base64
import json
import struct
import uuid
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from capstan.testing.simulator.common import (
    paced_stream,
    presented_credential,
    read_json,
    rejected,
    sse,
)
from capstan.testing.simulator.embeddings import gaussian_vector
from capstan.testing.simulator.prompt_cache import PromptCache, prefix_keys
from capstan.testing.simulator.state import SimulatorState
from capstan.testing.simulator.text import (
    apply_stop,
    arguments_for,
    count_tokens,
    reply_text,
    seed_of,
    split_words,
    truncated,
)
from capstan.testing.simulator.tool_use import ToolSpec, tools_to_call

PROMPT_TEMPLATE_TOKENS = 7
EMBED_DIMENSIONS = 1024
ROLES = frozenset({"system", "user", "assistant", "tool"})
INPUT_TYPES = frozenset({"search_document", "search_query", "classification", "clustering"})
EMBEDDING_TYPES = frozenset({"float", "int8", "uint8", "binary", "ubinary", "base64"})
MAX_STOP_SEQUENCES = 5
MAX_EMBED_TEXTS = 96
_ERROR_MESSAGES = {
    429: "You are past the per-minute request limit, please wait and try again later.",
    500: "internal server error, this has been reported to our developers",
    503: "service unavailable: the model is overloaded, please try again later",
}


class InvalidRequest(ValueError):
    """A request Cohere would refuse with 400 `invalid request: ...`."""


@dataclass
class Reply:
    """What the simulated model says: text, or a tool plan and one tool call."""

    finish_reason: str
    text: str = ""
    tool_plan: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def output_tokens(self) -> int:
        arguments = " ".join(c["function"]["arguments"] for c in self.tool_calls)
        return count_tokens(self.text) + count_tokens(self.tool_plan) + count_tokens(arguments)


def routes(state: SimulatorState) -> list[BaseRoute]:
    return [
        Route("/v2/chat", _chat_endpoint(state), methods=["POST"]),
        Route("/v2/embed", _embed_endpoint(state), methods=["POST"]),
    ]


def error(status: int, message: str, retry_after_s: float | None = None) -> Response:
    headers = {"retry-after": f"{retry_after_s:g}"} if retry_after_s is not None else None
    return JSONResponse({"message": message}, status_code=status, headers=headers)


async def _gate(request: Request, state: SimulatorState, body: Any) -> Response | str:
    """Auth, the model and the faults, in Cohere's order; the model name when all pass."""
    if rejected(presented_credential(request, "authorization")):
        return error(401, "invalid api token")
    if not isinstance(body, dict):
        return error(400, "invalid request: the body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return error(400, "invalid request: model must be provided")
    if model.startswith("unknown-"):
        return error(
            404,
            f"model '{model}' not found, make sure the correct model ID was used "
            "and that you have access to the model.",
        )
    failure = await state.before_response(model)
    if failure is not None:
        status = failure.status
        retry = failure.retry_after_s if status == 429 else None
        return error(status, _ERROR_MESSAGES.get(status, f"upstream failure ({status})"), retry)
    return model


def _chat_endpoint(state: SimulatorState) -> Any:
    async def endpoint(request: Request) -> Response:
        body = await read_json(request, state)
        gate = await _gate(request, state, body)
        if isinstance(gate, Response):
            return gate
        try:
            validate_chat(body)
        except InvalidRequest as exc:
            return error(400, f"invalid request: {exc}")
        window = state.faults_for(gate).context_window
        prompt_tokens = input_words(body["messages"])
        if window is not None and prompt_tokens > window:
            return error(
                400,
                f"too many tokens: total number of tokens in the prompt cannot exceed {window} "
                f"- received {prompt_tokens}. Try using a shorter prompt.",
            )
        reply = compose_reply(gate, body)
        usage = usage_of(body["messages"], reply)
        usage["cached_tokens"] = cached_tokens(gate, body["messages"], state.prompt_cache)
        reply_id = str(uuid.uuid4())
        if body.get("stream") is True:
            frames = stream_events(reply_id, reply, usage)
            return StreamingResponse(
                paced_stream(state, gate, frames), media_type="text/event-stream"
            )
        return JSONResponse(chat_response(reply_id, reply, usage))

    return endpoint


def validate_chat(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty list")
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ROLES:
            raise InvalidRequest(f"message role must be one of {sorted(ROLES)}, got {role!r}")
        if role == "tool" and not message.get("tool_call_id"):
            raise InvalidRequest("tool messages must have a tool_call_id")
    tools = body.get("tools") or []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if tool.get("type") != "function" or not isinstance(function, dict):
            raise InvalidRequest("tools must be of type function")
        if not function.get("name") or not isinstance(function.get("parameters"), dict):
            raise InvalidRequest("every tool function needs a name and parameters")
    choice = body.get("tool_choice")
    if choice not in (None, "REQUIRED", "NONE"):
        raise InvalidRequest("tool_choice must be one of REQUIRED, NONE")
    if choice == "REQUIRED" and not tools:
        raise InvalidRequest("tool_choice REQUIRED needs tools")
    if body.get("response_format") and tools:
        raise InvalidRequest("response_format is not supported with tools")
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise InvalidRequest("max_tokens must be a positive integer")
    if len(body.get("stop_sequences") or []) > MAX_STOP_SEQUENCES:
        raise InvalidRequest(f"stop_sequences accepts at most {MAX_STOP_SEQUENCES} entries")
    p = body.get("p")
    if p is not None and not 0.01 <= p <= 0.99:
        raise InvalidRequest("p must be between 0.01 and 0.99")
    k = body.get("k")
    if k is not None and not 0 <= k <= 500:
        raise InvalidRequest("k must be between 0 and 500")


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or the text blocks of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def last_user_text(messages: list[dict[str, Any]]) -> str:
    return next(
        (content_text(m.get("content")) for m in reversed(messages) if m["role"] == "user"), ""
    )


def compose_reply(model: str, body: dict[str, Any]) -> Reply:
    """A tool call when tools are offered, not refused, and the last message is not a tool
    result; JSON when a JSON response format is asked for; otherwise text."""
    messages: list[dict[str, Any]] = body["messages"]
    prompt = last_user_text(messages)
    tools = body.get("tools") or []
    if tools and body.get("tool_choice") != "NONE" and messages[-1]["role"] != "tool":
        offered = [ToolSpec(t["function"]["name"], t["function"]["parameters"]) for t in tools]
        (tool,) = tools_to_call(offered, mentioned_in=prompt)
        name = tool.name
        seed = seed_of(model, prompt, name)
        arguments = json.dumps(arguments_for(tool.parameters, seed))
        call = {
            "id": f"{name}_{seed:016x}"[: len(name) + 13],
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        plan = f"I will use the {name} tool to answer this."
        return Reply("TOOL_CALL", tool_plan=plan, tool_calls=[call])
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_object":
        schema = response_format.get("json_schema") or {
            "properties": {"answer": {"type": "string"}}
        }
        document = arguments_for(schema, seed_of(model, prompt, body.get("seed")))
        return Reply("COMPLETE", text=orjson.dumps(document).decode())
    max_tokens = body.get("max_tokens")
    text = reply_text(model, prompt, max_tokens, body.get("seed"))
    cut, matched = apply_stop(text, list(body.get("stop_sequences") or []))
    if matched is not None:
        return Reply("STOP_SEQUENCE", text=cut)
    return Reply("MAX_TOKENS" if truncated(max_tokens, text) else "COMPLETE", text=text)


def input_words(messages: list[dict[str, Any]]) -> int:
    total = 0
    for message in messages:
        total += count_tokens(content_text(message.get("content")))
        total += count_tokens(str(message.get("tool_plan") or ""))
        for call in message.get("tool_calls") or []:
            total += count_tokens(str((call.get("function") or {}).get("arguments") or ""))
    return total


def cached_tokens(model: str, messages: list[dict[str, Any]], cache: PromptCache) -> int:
    """Words of the longest earlier-seen prefix of `messages` (the last one excluded), the way
    Cohere reports prompt tokens that hit its cache; then remember this request's prefixes."""
    keys = prefix_keys("cohere", model, messages)
    running = accumulate(input_words([message]) for message in messages)
    return cache.longest_seen(list(zip(keys, running, strict=True)), lookups=len(messages) - 1)


def usage_of(messages: list[dict[str, Any]], reply: Reply) -> dict[str, Any]:
    billed_in, out = input_words(messages), reply.output_tokens
    return {
        "billed_units": {"input_tokens": billed_in, "output_tokens": out},
        "tokens": {"input_tokens": billed_in + PROMPT_TEMPLATE_TOKENS, "output_tokens": out},
    }


def chat_response(reply_id: str, reply: Reply, usage: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant"}
    if reply.tool_calls:
        message["tool_plan"] = reply.tool_plan
        message["tool_calls"] = reply.tool_calls
    else:
        message["content"] = [{"type": "text", "text": reply.text}]
    return {
        "id": reply_id,
        "message": message,
        "finish_reason": reply.finish_reason,
        "usage": usage,
    }


def event(kind: str, **fields: Any) -> bytes:
    return sse({"type": kind, **fields}, event=kind)


def _message(**fields: Any) -> dict[str, Any]:
    return {"message": fields}


def stream_events(reply_id: str, reply: Reply, usage: dict[str, Any]) -> list[tuple[bool, bytes]]:
    """The whole stream as (paced, frame) pairs; paced frames are the ones a fault can cut."""
    start = _message(role="assistant", content=[], tool_plan="", tool_calls=[], citations=[])
    frames: list[tuple[bool, bytes]] = [(False, event("message-start", id=reply_id, delta=start))]
    if reply.tool_calls:
        for piece in split_words(reply.tool_plan):
            frames.append((True, event("tool-plan-delta", delta=_message(tool_plan=piece))))
        for index, call in enumerate(reply.tool_calls):
            head = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
            frames.append(
                (False, event("tool-call-start", index=index, delta=_message(tool_calls=head)))
            )
            for piece in split_words(call["function"]["arguments"]):
                delta = _message(tool_calls={"function": {"arguments": piece}})
                frames.append((True, event("tool-call-delta", index=index, delta=delta)))
            frames.append((False, event("tool-call-end", index=index)))
    else:
        opening = _message(content={"type": "text", "text": ""})
        frames.append((False, event("content-start", index=0, delta=opening)))
        for piece in split_words(reply.text) if reply.text else []:
            delta = _message(content={"text": piece})
            frames.append((True, event("content-delta", index=0, delta=delta)))
        frames.append((False, event("content-end", index=0)))
    end = {"finish_reason": reply.finish_reason, "usage": usage}
    frames.append((False, event("message-end", delta=end)))
    frames.append((False, sse("[DONE]")))
    return frames


def _embed_endpoint(state: SimulatorState) -> Any:
    async def endpoint(request: Request) -> Response:
        body = await read_json(request, state)
        gate = await _gate(request, state, body)
        if isinstance(gate, Response):
            return gate
        try:
            texts, types = validate_embed(body)
        except InvalidRequest as exc:
            return error(400, f"invalid request: {exc}")
        dimensions = body.get("output_dimension") or EMBED_DIMENSIONS
        vectors = [gaussian_vector(dimensions, gate, "embed", text) for text in texts]
        return JSONResponse(
            {
                "id": str(uuid.uuid4()),
                "embeddings": {kind: encode_embeddings(kind, vectors) for kind in types},
                "texts": texts,
                "meta": {
                    "api_version": {"version": "2"},
                    "billed_units": {"input_tokens": sum(count_tokens(t) for t in texts)},
                },
                "response_type": "embeddings_by_type",
            }
        )

    return endpoint


def validate_embed(body: dict[str, Any]) -> tuple[list[str], list[str]]:
    texts = body.get("texts")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidRequest("texts must be a non-empty list of strings")
    if len(texts) > MAX_EMBED_TEXTS:
        raise InvalidRequest(f"texts accepts at most {MAX_EMBED_TEXTS} entries")
    if body.get("input_type") not in INPUT_TYPES:
        raise InvalidRequest("valid input_type must be provided with the provided model")
    types = body.get("embedding_types") or ["float"]
    unknown = [t for t in types if t not in EMBEDDING_TYPES]
    if unknown:
        raise InvalidRequest(f"unknown embedding_types {unknown}")
    return texts, list(types)


def encode_embeddings(kind: str, vectors: list[list[float]]) -> list[Any]:
    """Cohere's encodings of float vectors: quantized ints, packed sign bits, or base64 of the
    little-endian float32 bytes."""
    if kind == "int8":
        return [[max(-128, min(127, round(x * 127 * 8))) for x in v] for v in vectors]
    if kind == "uint8":
        return [[max(0, min(255, round(x * 127 * 8) + 128)) for x in v] for v in vectors]
    if kind in ("binary", "ubinary"):
        packed = [_pack_bits(v) for v in vectors]
        return [[b - 128 for b in row] for row in packed] if kind == "binary" else packed
    if kind == "base64":
        return [base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() for v in vectors]
    return vectors


def _pack_bits(vector: list[float]) -> list[int]:
    bits = [1 if x > 0 else 0 for x in vector]
    return [
        int("".join(map(str, bits[i : i + 8])).ljust(8, "0"), 2) for i in range(0, len(bits), 8)
    ]
