"""Answering a validated Messages API request: the `message` object, or its stream of events,
shaped field for field like Anthropic's.

The reply is planned once as content blocks (an optional `thinking` block with its signature,
text, then `tool_use` blocks) and either sent whole or streamed as Anthropic streams it:
`message_start`, for each block `content_block_start` / `content_block_delta`... /
`content_block_stop` (a `ping` after the first start), `message_delta` with the stop reason and
output tokens, `message_stop`. Every event carries both its `event:` and `data:` lines, since the
SDK ignores events without the former.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse, Response, StreamingResponse

from capstan.testing.simulator import text
from capstan.testing.simulator.anthropic_request import (
    CacheUsage,
    cache_usage,
    chosen_tools,
    prompt_text,
    thinking_budget,
)
from capstan.testing.simulator.common import paced_stream, sse
from capstan.testing.simulator.ids import BASE58, random_id
from capstan.testing.simulator.state import SimulatorState


@dataclass(frozen=True, slots=True)
class Reply:
    id: str
    model: str
    blocks: list[dict[str, Any]]
    stop_reason: str
    stop_sequence: str | None
    output_tokens: int
    usage: CacheUsage


def new_id(prefix: str) -> str:
    """Anthropic-style ids: a prefix, `01`, then 22 base58 characters."""
    return prefix + "01" + random_id(22, BASE58)


async def respond(
    body: dict[str, Any], model: str, state: SimulatorState, headers: dict[str, str]
) -> Response:
    reply = plan(body, model, state)
    if not body.get("stream"):
        return JSONResponse(message(reply), headers=headers)
    return StreamingResponse(stream(reply, state), media_type="text/event-stream", headers=headers)


def plan(body: dict[str, Any], model: str, state: SimulatorState) -> Reply:
    """The blocks of the answer, its stop reason and its usage."""
    prompt = prompt_text(body)
    remaining = int(body["max_tokens"])
    blocks: list[dict[str, Any]] = []
    budget = thinking_budget(body)
    if budget is not None:
        thought = text.reasoning_text(model, prompt, budget)
        signature = base64.b64encode(hashlib.sha512(thought.encode()).digest() * 2).decode()
        blocks.append({"type": "thinking", "thinking": thought, "signature": signature})
        remaining -= text.count_tokens(thought)
    tools = chosen_tools(body)
    forced = (body.get("tool_choice") or {}).get("type") in ("any", "tool")
    stop_reason, stop_sequence = "end_turn", None
    if not forced:
        full = (
            f"I'll use the {tools[0].name} tool." if tools else text.reply_text(model, prompt, None)
        )
        words = full.split(" ")
        if len(words) > remaining:
            full, stop_reason = " ".join(words[: max(1, remaining)]), "max_tokens"
        cut, matched = text.apply_stop(full, list(body.get("stop_sequences") or []))
        if matched is not None:
            full, stop_reason, stop_sequence = cut, "stop_sequence", matched
        blocks.append({"type": "text", "text": full})
    if tools and stop_reason == "end_turn":
        stop_reason = "tool_use"
        for tool in tools:
            arguments = text.arguments_for(tool.parameters, text.seed_of(model, prompt, tool.name))
            blocks.append(
                {"type": "tool_use", "id": new_id("toolu_"), "name": tool.name, "input": arguments}
            )
    return Reply(
        id=new_id("msg_"),
        model=model,
        blocks=blocks,
        stop_reason=stop_reason,
        stop_sequence=stop_sequence,
        output_tokens=sum(_block_tokens(block) for block in blocks),
        usage=cache_usage(model, body, state.prompt_cache),
    )


def _block_tokens(block: dict[str, Any]) -> int:
    if block["type"] == "thinking":
        return text.count_tokens(block["thinking"])
    if block["type"] == "tool_use":
        return text.count_tokens(block["name"] + " " + json.dumps(block["input"]))
    return text.count_tokens(block["text"])


def usage(reply: Reply, output_tokens: int) -> dict[str, Any]:
    cached = reply.usage
    return {
        "input_tokens": cached.input_tokens,
        "cache_creation_input_tokens": cached.cache_creation_input_tokens,
        "cache_read_input_tokens": cached.cache_read_input_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": (
                cached.cache_creation_input_tokens if cached.ttl != "1h" else 0
            ),
            "ephemeral_1h_input_tokens": (
                cached.cache_creation_input_tokens if cached.ttl == "1h" else 0
            ),
        },
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def message(reply: Reply) -> dict[str, Any]:
    """The non-streamed `message` object."""
    return {
        "id": reply.id,
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": reply.blocks,
        "stop_reason": reply.stop_reason,
        "stop_sequence": reply.stop_sequence,
        "usage": usage(reply, reply.output_tokens),
    }


def _block_events(index: int, block: dict[str, Any]) -> list[tuple[str, dict[str, Any], bool]]:
    """One block as (event, data, paced) triples; paced events are the deltas."""
    kind = block["type"]
    start: dict[str, Any]
    if kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [
            {"type": "thinking_delta", "thinking": piece}
            for piece in text.split_words(block["thinking"])
        ]
        deltas.append({"type": "signature_delta", "signature": block["signature"]})
    elif kind == "tool_use":
        start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        deltas = [
            {"type": "input_json_delta", "partial_json": piece}
            for piece in text.split_words(json.dumps(block["input"]))
        ]
    else:
        start = {"type": "text", "text": ""}
        deltas = [
            {"type": "text_delta", "text": piece} for piece in text.split_words(block["text"])
        ]
    events = [
        (
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": start},
            False,
        )
    ]
    if index == 0:
        events.append(("ping", {"type": "ping"}, False))
    events.extend(
        ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}, True)
        for d in deltas
    )
    events.append(("content_block_stop", {"type": "content_block_stop", "index": index}, False))
    return events


def events(reply: Reply) -> list[tuple[str, dict[str, Any], bool]]:
    """The whole stream as (event, data, paced) triples."""
    start = {
        "type": "message_start",
        "message": {
            "id": reply.id,
            "type": "message",
            "role": "assistant",
            "model": reply.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage(reply, 1),
        },
    }
    result = [("message_start", start, False)]
    for index, block in enumerate(reply.blocks):
        result.extend(_block_events(index, block))
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence},
        "usage": {"output_tokens": reply.output_tokens},
    }
    result.append(("message_delta", delta, False))
    result.append(("message_stop", {"type": "message_stop"}, False))
    return result


def stream(reply: Reply, state: SimulatorState) -> AsyncIterator[bytes]:
    """The events of `reply`, paced by the model's faults; the stream is cut dead, with no
    `message_stop`, when the faults say so."""
    return paced_stream(state, reply.model, _frames(reply))


def _frames(reply: Reply) -> Iterator[tuple[bool, bytes]]:
    """The events as `(paced, frame)` pairs: events before a delta go out with it (so
    `message_start` arrives after the time to first token)."""
    held = b""
    for event, data, paced in events(reply):
        held += sse(data, event)
        if paced:
            yield True, held
            held = b""
    if held:
        yield False, held
