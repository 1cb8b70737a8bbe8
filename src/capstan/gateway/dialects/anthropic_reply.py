"""The Anthropic dialect's way out: OpenAI completions and chunks → Anthropic Messages and events.

Choices made where the formats disagree:
- `reasoning_content` (or `reasoning`, as some OpenAI-compatible servers name it) becomes a
  `thinking` block placed first, with an empty `signature`: there is none to give, and such a
  block cannot be sent back to an Anthropic model anyway (the dialect drops thinking on input);
- tool-call arguments that are not a JSON object become `{"_raw_arguments": "<text>"}`:
  Anthropic's `input` must be an object, and keeping the text beats silently losing it;
- `finish_reason` "stop" becomes `stop_sequence` only when the upstream names the matched
  sequence (vLLM's `stop_reason`) and it is one of the request's; OpenAI strips the sequence
  from the text and does not say which one matched, so otherwise it is `end_turn`;
- a `refusal` becomes a text block and the `refusal` stop reason;
- in a stream, `message_start` cannot know the input tokens (OpenAI reports usage last), so it
  carries zeros and the final `message_delta` carries the real counts, which the Anthropic SDK
  takes as cumulative totals; tool calls are assumed to stream one after another, as OpenAI
  sends them (a late argument piece for an earlier call still goes to that call's block).
"""

from __future__ import annotations

import uuid
from typing import Any

from capstan.gateway.providers.anthropic_translate import parse_arguments

Event = tuple[str, dict[str, Any]]

STOP_REASONS: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def anthropic_usage(usage: dict[str, Any] | None) -> dict[str, int]:
    """Anthropic usage from OpenAI usage: Anthropic's `input_tokens` excludes the tokens read
    from or written to the cache, which OpenAI's `prompt_tokens` includes."""
    usage = usage or {}
    details = usage.get("prompt_tokens_details") or {}
    cache_read = int(details.get("cached_tokens") or 0)
    cache_creation = int(details.get("cache_creation_tokens") or 0)
    prompt = int(usage.get("prompt_tokens") or 0)
    return {
        "input_tokens": max(prompt - cache_read - cache_creation, 0),
        "output_tokens": int(usage.get("completion_tokens") or 0),
        "cache_read_input_tokens": cache_read,
        "cache_creation_input_tokens": cache_creation,
    }


def stop_reason(
    finish: str | None, matched: Any = None, stop: list[str] | None = None
) -> tuple[str, str | None]:
    """(Anthropic stop reason, stop sequence) for an OpenAI finish reason; `matched` is the
    upstream's own report of the stop string, where it gives one."""
    if finish == "stop" and isinstance(matched, str) and stop and matched in stop:
        return "stop_sequence", matched
    return STOP_REASONS.get(finish or "stop", "end_turn"), None


def message_id(completion_id: Any) -> str:
    """An Anthropic-looking id (`msg_…`) that keeps the upstream's id for tracing."""
    if not completion_id:
        return f"msg_{uuid.uuid4().hex}"
    return "msg_" + str(completion_id).removeprefix("chatcmpl-")


def to_anthropic_message(
    completion: dict[str, Any], model: str, stop: list[str] | None = None
) -> dict[str, Any]:
    """An Anthropic Message for an OpenAI `chat.completion`; `model` is the name the client
    asked for, `stop` the request's stop sequences."""
    choices = completion.get("choices") or [{}]
    choice = choices[0]
    reply = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    reasoning = reply.get("reasoning_content") or reply.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = _text(reply.get("content"))
    if text:
        content.append({"type": "text", "text": text})
    refusal = reply.get("refusal")
    if refusal:
        content.append({"type": "text", "text": refusal})
    for call in reply.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{uuid.uuid4().hex}",
                "name": function.get("name"),
                "input": parse_arguments(function.get("arguments")),
            }
        )
    reason, sequence = stop_reason(choice.get("finish_reason"), choice.get("stop_reason"), stop)
    if refusal:
        reason = "refusal"
    return {
        "id": message_id(completion.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": anthropic_usage(completion.get("usage")),
    }


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if p.get("type") == "text")
    return ""


class AnthropicStreamTranslator:
    """Turns one stream's OpenAI chunks into Anthropic events; one instance per stream.

    Call `feed` with each chunk and `finish` once the upstream stream has ended: `finish`
    closes the open block and emits `message_delta` (stop reason, usage) and `message_stop`,
    which must wait for the usage chunk that OpenAI sends last."""

    def __init__(
        self, model: str, stop: list[str] | None = None, message_id: str | None = None
    ) -> None:
        self.model = model
        self.stop = stop
        self.message_id = message_id
        self._started = False
        self._open: tuple[str, int] | None = None  # (block type, block index)
        self._next_index = 0
        self._tool_blocks: dict[int, int] = {}  # OpenAI tool_calls index → block index
        self._finish: str | None = None
        self._matched: Any = None
        self._refused = False
        self._usage: dict[str, Any] | None = None

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        events = self._start(chunk)
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                events += self._delta("thinking", {"type": "thinking_delta", "thinking": reasoning})
            if delta.get("content"):
                events += self._delta("text", {"type": "text_delta", "text": delta["content"]})
            if delta.get("refusal"):
                self._refused = True
                events += self._delta("text", {"type": "text_delta", "text": delta["refusal"]})
            for call in delta.get("tool_calls") or []:
                events += self._tool_delta(call)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
                self._matched = choice.get("stop_reason")
        return events

    def finish(self) -> list[Event]:
        events = self._start({})
        events += self._close()
        reason, sequence = stop_reason(self._finish, self._matched, self.stop)
        if self._refused:
            reason = "refusal"
        usage = anthropic_usage(self._usage)
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": reason, "stop_sequence": sequence},
                    "usage": {"output_tokens": usage.pop("output_tokens"), **usage},
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return events

    def _start(self, chunk: dict[str, Any]) -> list[Event]:
        if self._started:
            return []
        self._started = True
        self.message_id = self.message_id or message_id(chunk.get("id"))
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def _close(self) -> list[Event]:
        if self._open is None:
            return []
        index = self._open[1]
        self._open = None
        return [("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _open_block(self, kind: str, block: dict[str, Any]) -> list[Event]:
        events = self._close()
        index = self._next_index
        self._next_index += 1
        self._open = (kind, index)
        start = {"type": "content_block_start", "index": index, "content_block": block}
        events.append(("content_block_start", start))
        return events

    def _delta(self, kind: str, delta: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        if self._open is None or self._open[0] != kind:
            empty = {"type": "text", "text": ""}
            if kind == "thinking":
                empty = {"type": "thinking", "thinking": "", "signature": ""}
            events += self._open_block(kind, empty)
        index = self._next_index - 1  # the open block is always the newest one
        data = {"type": "content_block_delta", "index": index, "delta": delta}
        events.append(("content_block_delta", data))
        return events

    def _tool_delta(self, call: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        position = int(call.get("index") or 0)
        function = call.get("function") or {}
        if position not in self._tool_blocks:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{uuid.uuid4().hex}",
                "name": function.get("name") or "",
                "input": {},
            }
            events += self._open_block("tool_use", block)
            self._tool_blocks[position] = self._next_index - 1
        arguments = function.get("arguments")
        if arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            data = {"type": "content_block_delta", "index": self._tool_blocks[position]}
            events.append(("content_block_delta", {**data, "delta": delta}))
        return events
