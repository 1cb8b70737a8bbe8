"""Cohere `/v2/chat` answers as OpenAI `chat.completion` dicts, and its stream events as
`chat.completion.chunk` dicts.

Cohere's `tool_plan` (the text the model writes before calling tools) becomes the assistant
message's `content`: OpenAI has no other place for it, and Anthropic-style "text before
tool_use" is translated the same way. Usage comes from `usage.tokens` (every token the model
read, prompt template included: OpenAI's meaning of `prompt_tokens`), falling back to
`usage.billed_units` (what Cohere charges for, which omits the template).

`StreamTranslator` is a pure state machine: `feed` takes one decoded event and returns the
chunks it becomes, so the translation is tested without a server. Cohere tells a tool call's
id and name once (`tool-call-start`) before its argument pieces (`tool-call-delta`), which is
what OpenAI wants too: a first tool-call delta with index, id and name, then argument pieces
under that index. The tool plan streams as content, as in non-streaming answers.
`message-end` gives the finish chunk, then the one usage chunk the streaming contract asks for.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from capstan.gateway.providers.base import ChatChunk, ChatCompletion, FailureKind, UpstreamError
from capstan.gateway.providers.openai_shapes import (
    assistant_message,
    chat_completion,
    completion_choice,
    completion_chunk,
    token_usage,
    tool_call,
    usage_chunk,
)

__all__ = ["StreamTranslator", "completion_from_cohere", "finish_reason", "usage_from_cohere"]

FINISH_REASONS = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}


def finish_reason(reason: Any, error: Any) -> str:
    """OpenAI's finish reason for Cohere's; ERROR and TIMEOUT are failures, not endings."""
    if reason == "ERROR":
        message = str(error or "the upstream failed while generating")
        raise UpstreamError(FailureKind.SERVER, message, status=200)
    if reason == "TIMEOUT":
        raise UpstreamError(FailureKind.TIMEOUT, "the upstream timed out while generating")
    return FINISH_REASONS.get(str(reason), "stop")


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _count(*values: Any) -> int:
    """The first present count; Cohere sends counts as JSON numbers that may be floats."""
    return next((int(v) for v in values if v is not None), 0)


def usage_from_cohere(usage: Any) -> dict[str, Any]:
    """OpenAI usage from Cohere's: `tokens` first (all tokens read, template included), then
    `billed_units`; `cached_tokens` becomes `prompt_tokens_details.cached_tokens`."""
    usage = usage if isinstance(usage, dict) else {}
    tokens = usage.get("tokens") or {}
    billed = usage.get("billed_units") or {}
    cached = usage.get("cached_tokens")
    return token_usage(
        _count(tokens.get("input_tokens"), billed.get("input_tokens")),
        _count(tokens.get("output_tokens"), billed.get("output_tokens")),
        cached=int(cached) if cached else None,
    )


@dataclass
class StreamTranslator:
    """One stream's translation state: its id, and Cohere tool-call index -> OpenAI index."""

    model: str
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))
    finished: bool = False
    _tool_index: dict[Any, int] = field(default_factory=dict)

    def feed(self, event: dict[str, Any]) -> list[ChatChunk]:
        kind = event.get("type")
        delta = _object(event.get("delta"))
        message = _object(delta.get("message"))
        if kind == "message-start":
            self.id = str(event.get("id") or self.id)
            return [self.chunk({"role": "assistant", "content": ""})]
        if kind in ("content-start", "content-delta"):
            text = (message.get("content") or {}).get("text")
            return [self.chunk({"content": text})] if text else []
        if kind == "tool-plan-delta":
            plan = message.get("tool_plan")
            return [self.chunk({"content": plan})] if plan else []
        if kind == "tool-call-start":
            return [self._tool_call_start(event.get("index"), message.get("tool_calls") or {})]
        if kind == "tool-call-delta":
            function = (message.get("tool_calls") or {}).get("function") or {}
            arguments = function.get("arguments")
            if not arguments:
                return []
            index = self._tool_index.get(event.get("index"), len(self._tool_index) - 1)
            call = {"index": max(index, 0), "function": {"arguments": arguments}}
            return [self.chunk({"tool_calls": [call]})]
        if kind == "message-end":
            reason = finish_reason(delta.get("finish_reason"), delta.get("error"))
            self.finished = True  # only a good ending: a failed one is raised, not finished
            usage = usage_from_cohere(delta.get("usage"))
            return [self.chunk({}, reason), usage_chunk(self.id, self.created, self.model, usage)]
        return []  # content-end, tool-call-end, citations, debug: nothing for OpenAI

    def _tool_call_start(self, cohere_index: Any, call: dict[str, Any]) -> ChatChunk:
        index = len(self._tool_index)
        self._tool_index[cohere_index if cohere_index is not None else index] = index
        function = call.get("function") or {}
        arguments = function.get("arguments") or ""
        entry = {"index": index, **tool_call(call.get("id"), function.get("name"), arguments)}
        return self.chunk({"tool_calls": [entry]})

    def chunk(self, delta: dict[str, Any], reason: str | None = None) -> ChatChunk:
        return completion_chunk(self.id, self.created, self.model, delta, reason)


def completion_from_cohere(data: Any, model: str) -> ChatCompletion:
    """An OpenAI `chat.completion` from a `/v2/chat` answer."""
    message = data.get("message") if isinstance(data, dict) else None
    if not isinstance(message, dict):
        raise UpstreamError(FailureKind.MALFORMED, "the upstream answer has no message")
    text = "".join(
        str(item.get("text") or "")
        for item in message.get("content") or []
        if item.get("type") == "text"
    )
    tool_calls = []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        arguments = function.get("arguments") or "{}"
        tool_calls.append(tool_call(call.get("id"), function.get("name"), arguments))
    reply = assistant_message(text or message.get("tool_plan") or "", tool_calls)
    return chat_completion(
        id=data.get("id") or "",
        model=model,
        choices=[completion_choice(reply, finish_reason(data.get("finish_reason"), None))],
        usage=usage_from_cohere(data.get("usage")),
    )
