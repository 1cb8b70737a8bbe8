"""The Anthropic dialect: Messages API requests in, OpenAI-shaped requests to the gateway.

`to_openai_request` translates an Anthropic-SDK client's body for a non-Anthropic upstream; the
reply goes back through `to_anthropic_message` or `AnthropicStreamTranslator` (in
`anthropic_reply`, re-exported here); errors are written with `anthropic_error` and streamed
events framed with `sse_bytes`.

Choices made where the formats disagree:
- `thinking` / `redacted_thinking` blocks in the history are dropped: their signatures mean
  nothing to another vendor, and OpenAI-shaped models take no reasoning as input;
- `top_k` is dropped, not refused: OpenAI has no such knob and clients set it casually;
- `cache_control` markers are stripped: prompt caching is each upstream's own business;
- a `tool_result` with `is_error` has its text prefixed with `Error: `, OpenAI's tool message
  having no error flag; images inside tool results are refused (OpenAI tool messages are text);
- `document` blocks pass only with a text source (or a content source of text blocks); PDFs are
  refused rather than silently dropped;
- server tools (`web_search_…`, `bash_…`, `computer_…`, …), `mcp_servers` and `container` are
  refused: they run on Anthropic's side and nowhere else;
- `thinking.budget_tokens` becomes `reasoning_effort` (≤1024 low, ≤2048 medium, above high),
  the inverse of the provider's mapping; `output_config.format` becomes `response_format`.
"""

from __future__ import annotations

from typing import Any

import orjson

from capstan.gateway.dialects.anthropic_reply import (
    AnthropicStreamTranslator,
    to_anthropic_message,
)
from capstan.gateway.providers.base import ChatRequest, TranslationError
from capstan.gateway.providers.openai_shapes import arguments_text, tool_call

__all__ = [
    "AnthropicStreamTranslator",
    "anthropic_error",
    "error_type",
    "sse_bytes",
    "to_anthropic_message",
    "to_openai_request",
]

ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_REFUSED_PARAMS = ("mcp_servers", "container")


def error_type(status: int) -> str:
    """Anthropic's error `type` for an HTTP status (other 4xx → invalid_request_error,
    other 5xx → api_error), so the Anthropic SDK raises its matching exception class."""
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def anthropic_error(status: int, type: str | None, message: str) -> dict[str, Any]:
    """The error body Anthropic writes; `type` None means the type that goes with `status`."""
    return {"type": "error", "error": {"type": type or error_type(status), "message": message}}


def sse_bytes(event: str, data: dict[str, Any]) -> bytes:
    """One server-sent event with both lines: the Anthropic SDK ignores events lacking `event:`."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def to_openai_request(body: dict[str, Any]) -> ChatRequest:
    """The gateway's OpenAI-shaped request for an Anthropic Messages body."""
    for name in _REFUSED_PARAMS:
        if body.get(name):
            raise TranslationError(f"`{name}` works only with Anthropic models", param=name)
    messages: list[dict[str, Any]] = []
    system = _system_text(body.get("system"))
    if system is not None:
        messages.append({"role": "system", "content": system})
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list):
        raise TranslationError("`messages` must be a list", param="messages")
    for position, message in enumerate(raw_messages):
        messages.extend(_message(message, position))
    request: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    if body.get("max_tokens") is not None:
        request["max_tokens"] = body["max_tokens"]
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            request[name] = body[name]
    if body.get("stop_sequences"):
        request["stop"] = list(body["stop_sequences"])
    user = (body.get("metadata") or {}).get("user_id")
    if user:
        request["user"] = str(user)
    effort = _reasoning_effort(body)
    if effort is not None:
        request["reasoning_effort"] = effort
    response_format = _response_format(body.get("output_config") or {})
    if response_format is not None:
        request["response_format"] = response_format
    _add_tools(request, body)
    if body.get("stream"):
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
    return request


def _system_text(system: Any) -> str | None:
    """System blocks joined into one string: many OpenAI-compatible servers take only a string
    system message, and Anthropic itself reads the blocks as one contiguous prompt."""
    if system is None:
        return None
    if isinstance(system, str):
        return system or None
    texts = [block.get("text") or "" for block in system if block.get("type") == "text"]
    return "\n\n".join(t for t in texts if t) or None


def _message(message: dict[str, Any], position: int) -> list[dict[str, Any]]:
    role = message.get("role")
    content = message.get("content")
    if role not in ("user", "assistant"):
        raise TranslationError(
            f"messages[{position}]: role must be user or assistant", param="messages"
        )
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise TranslationError(f"messages[{position}]: content is missing", param="messages")
    if role == "assistant":
        return _assistant(content, position)
    return _user(content, position)


def _user(blocks: list[dict[str, Any]], position: int) -> list[dict[str, Any]]:
    """Tool results become tool messages, in order, ahead of the turn's other content: OpenAI
    wants each tool answer right after the assistant message that called it."""
    tool_messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "tool_result":
            tool_messages.append(_tool_message(block, position))
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            parts.extend(_content_parts(block, position))
    messages = tool_messages
    if parts:
        only_text = len(parts) == 1 and parts[0]["type"] == "text"
        messages.append({"role": "user", "content": parts[0]["text"] if only_text else parts})
    return messages


def _content_parts(block: dict[str, Any], position: int) -> list[dict[str, Any]]:
    kind = block.get("type")
    if kind == "text":
        return [{"type": "text", "text": block.get("text") or ""}]
    if kind == "image":
        return [{"type": "image_url", "image_url": {"url": _image_url(block, position)}}]
    if kind == "document":
        return _document_parts(block, position)
    raise TranslationError(
        f"messages[{position}]: {kind!r} blocks can only reach Anthropic models",
        param="messages",
    )


def _image_url(block: dict[str, Any], position: int) -> str:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        return f"data:{source.get('media_type')};base64,{source.get('data')}"
    if source.get("type") == "url":
        return str(source.get("url"))
    raise TranslationError(
        f"messages[{position}]: image sources must be base64 or url", param="messages"
    )


def _document_parts(block: dict[str, Any], position: int) -> list[dict[str, Any]]:
    source = block.get("source") or {}
    if source.get("type") == "text":
        return [{"type": "text", "text": source.get("data") or ""}]
    if source.get("type") == "content":
        inner = source.get("content")
        if isinstance(inner, str):
            return [{"type": "text", "text": inner}]
        return [part for item in inner or [] for part in _content_parts(item, position)]
    raise TranslationError(
        f"messages[{position}]: only text documents can reach this model", param="messages"
    )


def _tool_message(block: dict[str, Any], position: int) -> dict[str, Any]:
    content = block.get("content")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        texts = []
        for item in content:
            if item.get("type") != "text":
                raise TranslationError(
                    f"messages[{position}]: tool results can only carry text for this model",
                    param="messages",
                )
            texts.append(item.get("text") or "")
        text = "".join(texts)
    if block.get("is_error"):
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text}


def _assistant(blocks: list[dict[str, Any]], position: int) -> list[dict[str, Any]]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            arguments = arguments_text(block.get("input"))
            calls.append(tool_call(block.get("id"), block.get("name"), arguments))
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise TranslationError(
                f"messages[{position}]: {kind!r} blocks can only reach Anthropic models",
                param="messages",
            )
    if not texts and not calls:
        return []
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    return [message]


def _add_tools(request: dict[str, Any], body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if not tools:
        return  # OpenAI refuses tool_choice without tools
    converted = []
    for index, tool in enumerate(tools):
        if tool.get("type") not in (None, "custom"):
            raise TranslationError(
                f"tools[{index}]: {tool.get('type')!r} runs only on Anthropic models",
                param="tools",
            )
        function: dict[str, Any] = {
            "name": tool.get("name"),
            "parameters": tool.get("input_schema") or {"type": "object", "properties": {}},
        }
        if tool.get("description"):
            function["description"] = tool["description"]
        converted.append({"type": "function", "function": function})
    request["tools"] = converted
    choice = body.get("tool_choice")
    if not choice:
        return
    kind = choice.get("type")
    if kind == "auto":
        request["tool_choice"] = "auto"
    elif kind == "any":
        request["tool_choice"] = "required"
    elif kind == "none":
        request["tool_choice"] = "none"
    elif kind == "tool":
        request["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    else:
        raise TranslationError(f"tool_choice type {kind!r} is not supported", param="tool_choice")
    if choice.get("disable_parallel_tool_use"):
        request["parallel_tool_calls"] = False


def _reasoning_effort(body: dict[str, Any]) -> str | None:
    effort = (body.get("output_config") or {}).get("effort")
    if effort:
        return "high" if effort in ("xhigh", "max") else str(effort)
    thinking = body.get("thinking") or {}
    if thinking.get("type") != "enabled":
        return None  # disabled, or adaptive: the upstream model decides
    budget = int(thinking.get("budget_tokens") or 0)
    if budget <= 1024:
        return "low"
    return "medium" if budget <= 2048 else "high"


def _response_format(output_config: dict[str, Any]) -> dict[str, Any] | None:
    output_format = output_config.get("format")
    if not output_format:
        return None
    if output_format.get("type") != "json_schema":
        raise TranslationError(
            f"output format {output_format.get('type')!r} is not supported", param="output_config"
        )
    return {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": output_format.get("schema") or {}},
    }
