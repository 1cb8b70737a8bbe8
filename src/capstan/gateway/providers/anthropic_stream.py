"""Anthropic's streamed Message events → OpenAI `chat.completion.chunk` dicts.

A stateful, I/O-free translator: `AnthropicProvider.stream_chat` feeds it each SSE event and yields
what it returns, so event-order corner cases are unit-tested without a server. The chunk sequence
follows the `Provider` streaming contract: a role chunk first, content / `reasoning_content` /
`tool_calls` deltas, one chunk with the finish reason, then one usage chunk with `choices: []`.

Thinking signatures (`signature_delta`) are not carried in the stream: OpenAI chunks have no place
for them. A client that needs to continue a thinking-and-tools conversation should use the
non-streaming call, whose message carries `thinking_blocks`.
"""

from __future__ import annotations

import time
from typing import Any

from capstan.gateway.providers.anthropic_translate import chat_usage, finish_reason
from capstan.gateway.providers.base import ChatChunk, FailureKind, UpstreamError
from capstan.gateway.providers.openai_shapes import completion_chunk, tool_call, usage_chunk

ERROR_KINDS: dict[str, FailureKind] = {
    "overloaded_error": FailureKind.OVERLOADED,
    "rate_limit_error": FailureKind.RATE_LIMITED,
    "api_error": FailureKind.SERVER,
    "timeout_error": FailureKind.TIMEOUT,
    "invalid_request_error": FailureKind.INVALID_REQUEST,
    "request_too_large": FailureKind.INVALID_REQUEST,
    "authentication_error": FailureKind.AUTHENTICATION,
    "permission_error": FailureKind.PERMISSION,
    "not_found_error": FailureKind.NOT_FOUND,
}


def stream_error(data: dict[str, Any]) -> UpstreamError:
    """The `UpstreamError` for an `error` event sent mid-stream (after the 200 headers)."""
    error = data.get("error")
    if not isinstance(error, dict):
        error = data
    kind = ERROR_KINDS.get(str(error.get("type")), FailureKind.SERVER)
    message = str(error.get("message") or "the upstream stream failed")
    return UpstreamError(kind, message)


class AnthropicChunkTranslator:
    """Turns one stream's Anthropic events into OpenAI chunks; one instance per stream."""

    def __init__(self) -> None:
        self.id = ""
        self.model = ""
        self.created = int(time.time())
        self.usage: dict[str, Any] = {}
        self.stop_reason: str | None = None
        self.finished = False
        self._tool_index: dict[int, int] = {}  # Anthropic block index → OpenAI tool_calls index

    def feed(self, event: str | None, data: dict[str, Any]) -> list[ChatChunk]:
        """The chunks one event produces (often none). An `error` event raises `UpstreamError`."""
        kind = data.get("type") or event
        if kind == "message_start":
            return self._start(data.get("message") or {})
        if kind == "content_block_start":
            return self._block_start(int(data.get("index") or 0), data.get("content_block") or {})
        if kind == "content_block_delta":
            return self._block_delta(int(data.get("index") or 0), data.get("delta") or {})
        if kind == "message_delta":
            delta = data.get("delta") or {}
            if delta.get("stop_reason"):
                self.stop_reason = delta["stop_reason"]
            # Anthropic's message_delta usage is cumulative: later values replace earlier ones.
            self.usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
            return []
        if kind == "message_stop":
            self.finished = True
            return [
                self._chunk({}, finish_reason(self.stop_reason)),
                usage_chunk(self.id, self.created, self.model, chat_usage(self.usage)),
            ]
        if kind == "error":
            raise stream_error(data)
        return []  # ping, content_block_stop, and event types added after this was written

    def _start(self, message: dict[str, Any]) -> list[ChatChunk]:
        self.id = message.get("id") or self.id
        self.model = message.get("model") or self.model
        self.usage.update({k: v for k, v in (message.get("usage") or {}).items() if v is not None})
        return [self._chunk({"role": "assistant", "content": ""})]

    def _block_start(self, index: int, block: dict[str, Any]) -> list[ChatChunk]:
        kind = block.get("type")
        if kind == "tool_use":
            position = len(self._tool_index)
            self._tool_index[index] = position
            call = {"index": position, **tool_call(block.get("id"), block.get("name"), "")}
            return [self._chunk({"tool_calls": [call]})]
        if kind == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        if kind == "thinking" and block.get("thinking"):
            return [self._chunk({"reasoning_content": block["thinking"]})]
        return []

    def _block_delta(self, index: int, delta: dict[str, Any]) -> list[ChatChunk]:
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [self._chunk({"content": delta["text"]})]
        if kind == "thinking_delta" and delta.get("thinking"):
            return [self._chunk({"reasoning_content": delta["thinking"]})]
        if kind == "input_json_delta" and delta.get("partial_json"):
            position = self._tool_index.get(index)
            if position is None:
                return []
            call = {"index": position, "function": {"arguments": delta["partial_json"]}}
            return [self._chunk({"tool_calls": [call]})]
        return []  # signature_delta, citations_delta

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> ChatChunk:
        return completion_chunk(self.id, self.created, self.model, delta, finish)
