"""Answering a validated chat-completions request: the `chat.completion` object, or its stream
of `chat.completion.chunk` events, shaped field for field like OpenAI's.

Replies are deterministic in the request (model, prompt, `seed`, choice index) so that a test can
predict them; usage always agrees with the text sent. Streams follow OpenAI's order: a first delta
with the role, content word by word (or tool calls: id and name first, then the arguments in
pieces), a last delta with the finish reason, the usage chunk when asked for, then `[DONE]`.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import JSONResponse, Response, StreamingResponse

from capstan.testing.simulator import text
from capstan.testing.simulator.common import paced_stream, sse
from capstan.testing.simulator.ids import HEX, random_id
from capstan.testing.simulator.openai_chat import (
    cached_tokens,
    chosen_tools,
    prompt_text,
    prompt_tokens,
)
from capstan.testing.simulator.state import SimulatorState


@dataclass(frozen=True, slots=True)
class Choice:
    index: int
    content: str | None
    finish_reason: str
    tokens: int
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Reply:
    """Everything the answer says, computed once, sent whole or streamed."""

    id: str
    created: int
    model: str
    fingerprint: str
    choices: list[Choice]
    usage: dict[str, Any]
    logprobs: bool
    top_logprobs: int


async def respond(
    body: dict[str, Any], model: str, state: SimulatorState, headers: dict[str, str]
) -> Response:
    reply = build_reply(body, model, state)
    if not body.get("stream"):
        return JSONResponse(completion(reply), headers=headers)
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    return StreamingResponse(
        stream(reply, state, include_usage), media_type="text/event-stream", headers=headers
    )


def build_reply(body: dict[str, Any], model: str, state: SimulatorState) -> Reply:
    prompt = prompt_text(body)
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    seed = body.get("seed")
    tools = chosen_tools(body)
    choices = []
    for index in range(body.get("n") or 1):
        choice_seed = seed if index == 0 else text.seed_of(seed, index)
        if tools:
            calls = [
                _tool_call(tool.name, tool.parameters, model, prompt, choice_seed) for tool in tools
            ]
            tokens = sum(
                text.count_tokens(c["function"]["name"] + " " + c["function"]["arguments"])
                for c in calls
            )
            choices.append(Choice(index, None, "tool_calls", tokens, calls))
            continue
        content, finish = _content(body, model, prompt, limit, choice_seed, stops)
        choices.append(Choice(index, content, finish, text.count_tokens(content)))
    prompt_count = prompt_tokens(body)
    completion_count = sum(choice.tokens for choice in choices)
    usage = {
        "prompt_tokens": prompt_count,
        "completion_tokens": completion_count,
        "total_tokens": prompt_count + completion_count,
        "prompt_tokens_details": {
            "cached_tokens": cached_tokens(model, body["messages"], state.prompt_cache),
            "audio_tokens": 0,
        },
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    return Reply(
        id="chatcmpl-" + random_id(30),
        created=int(time.time()),
        model=model,
        fingerprint="fp_" + hashlib.sha256(model.encode()).hexdigest()[:10],
        choices=choices,
        usage=usage,
        logprobs=bool(body.get("logprobs")),
        top_logprobs=int(body.get("top_logprobs") or 0),
    )


def _content(
    body: dict[str, Any],
    model: str,
    prompt: str,
    limit: int | None,
    seed: int | None,
    stops: list[str],
) -> tuple[str, str]:
    """The text of one choice and its finish reason: `length` when `limit` cut it, `stop` when
    a stop sequence did or the reply ended by itself."""
    response_format = body.get("response_format") or {}
    kind = response_format.get("type", "text")
    if kind == "json_schema":
        schema = response_format["json_schema"].get("schema") or {}
        full = json.dumps(text.arguments_for(schema, text.seed_of(model, prompt, seed)))
    elif kind == "json_object":
        full = json.dumps({"answer": text.reply_text(model, prompt, None, seed)})
    else:
        full = text.reply_text(model, prompt, None, seed)
    words = full.split(" ")
    finish = "stop"
    if limit is not None and len(words) > limit:
        full, finish = " ".join(words[:limit]), "length"
    cut, matched = text.apply_stop(full, stops)
    return (cut, "stop") if matched is not None else (full, finish)


def _tool_call(
    name: str, parameters: dict[str, Any], model: str, prompt: str, seed: int | None
) -> dict[str, Any]:
    arguments = text.arguments_for(parameters, text.seed_of(model, prompt, seed, name))
    return {
        "id": "call_" + random_id(24, HEX),
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def logprob_entries(pieces: list[str], top: int) -> list[dict[str, Any]]:
    """One `ChatCompletionTokenLogprob` per streamed piece, with `top` alternatives (the chosen
    token first, then vocabulary words less likely than it)."""
    entries = []
    for position, piece in enumerate(pieces):
        rng = random.Random(text.seed_of("logprob", piece, position))  # noqa: S311 - test data
        logprob = -round(rng.random() * 0.5, 6)
        alternatives = [{"token": piece, "logprob": logprob, "bytes": list(piece.encode())}]
        for rank in range(1, top):
            word = " " + rng.choice(text.VOCABULARY)
            alternatives.append(
                {
                    "token": word,
                    "logprob": round(logprob - rank - rng.random(), 6),
                    "bytes": list(word.encode()),
                }
            )
        entries.append(
            {
                "token": piece,
                "logprob": logprob,
                "bytes": list(piece.encode()),
                "top_logprobs": alternatives[:top],
            }
        )
    return entries


def _logprobs(reply: Reply, content: str | None) -> dict[str, Any] | None:
    if not reply.logprobs:
        return None
    entries = logprob_entries(text.split_words(content), reply.top_logprobs) if content else None
    return {"content": entries, "refusal": None}


def completion(reply: Reply) -> dict[str, Any]:
    """The non-streamed `chat.completion` object."""
    choices = []
    for choice in reply.choices:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": choice.content,
            "refusal": None,
            "annotations": [],
        }
        if choice.tool_calls:
            message["tool_calls"] = choice.tool_calls
        choices.append(
            {
                "index": choice.index,
                "message": message,
                "logprobs": _logprobs(reply, choice.content),
                "finish_reason": choice.finish_reason,
            }
        )
    return {
        "id": reply.id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "choices": choices,
        "usage": reply.usage,
        "service_tier": "default",
        "system_fingerprint": reply.fingerprint,
    }


def _chunk(
    reply: Reply, choices: list[dict[str, Any]], include_usage: bool, usage: Any = None
) -> bytes:
    chunk: dict[str, Any] = {
        "id": reply.id,
        "object": "chat.completion.chunk",
        "created": reply.created,
        "model": reply.model,
        "service_tier": "default",
        "system_fingerprint": reply.fingerprint,
        "choices": choices,
    }
    if include_usage:
        chunk["usage"] = usage
    return sse(chunk)


def _deltas(choice: Choice) -> list[dict[str, Any]]:
    """The deltas a choice streams as: each is one paced chunk."""
    if not choice.tool_calls:
        return [{"content": piece} for piece in text.split_words(choice.content or "")]
    deltas: list[dict[str, Any]] = []
    for position, call in enumerate(choice.tool_calls):
        function = call["function"]
        head = {
            "index": position,
            "id": call["id"],
            "type": "function",
            "function": {"name": function["name"], "arguments": ""},
        }
        deltas.append({"tool_calls": [head]})
        deltas.extend(
            {"tool_calls": [{"index": position, "function": {"arguments": piece}}]}
            for piece in text.split_words(function["arguments"])
        )
    deltas[0] = {"role": "assistant", "content": None, **deltas[0], "refusal": None}
    return deltas


def stream(reply: Reply, state: SimulatorState, include_usage: bool) -> AsyncIterator[bytes]:
    """The chunks of `reply`, paced by the model's faults; cut dead (no `[DONE]`, no end of the
    chunked body) when the faults say so."""
    return paced_stream(state, reply.model, _frames(reply, include_usage))


def _frames(reply: Reply, include_usage: bool) -> Iterator[tuple[bool, bytes]]:
    """The chunks as `(paced, frame)` pairs: each delta is paced, a text choice's role chunk goes
    out with its first delta."""
    for choice in reply.choices:
        logprobs = (
            logprob_entries(text.split_words(choice.content or ""), reply.top_logprobs)
            if reply.logprobs and choice.content
            else None
        )
        for position, delta in enumerate(_deltas(choice)):
            frame = b""
            if position == 0 and not choice.tool_calls:
                role = {"role": "assistant", "content": "", "refusal": None}
                frame = _chunk(reply, [_choice_chunk(choice.index, role, None)], include_usage)
            piece_logprobs = (
                {"content": [logprobs[position]], "refusal": None} if logprobs else None
            )
            delta_chunk = _choice_chunk(choice.index, delta, piece_logprobs)
            yield True, frame + _chunk(reply, [delta_chunk], include_usage)
        finish = _choice_chunk(choice.index, {}, None, choice.finish_reason)
        yield False, _chunk(reply, [finish], include_usage)
    if include_usage:
        yield False, _chunk(reply, [], include_usage, reply.usage)
    yield False, sse("[DONE]")


def _choice_chunk(
    index: int,
    delta: dict[str, Any],
    logprobs: dict[str, Any] | None,
    finish_reason: str | None = None,
) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
