"""Reading a chat-completions request the way OpenAI does: the same 400s for the same mistakes,
the same token accounting, and the prompt-cache bookkeeping.

A request that the real API would refuse is refused here with OpenAI's message, `param` and
`code`, so that a gateway translating another vendor's request into OpenAI's is caught when it
produces something OpenAI would not accept (a `tool` message without the assistant `tool_calls`
it answers, a tool call left unanswered, `json_object` without the word "json", ...).

Tokens are words (`text.count_tokens`) of every message's text (string content and text parts),
plus 85 per image part. Prompt caching: every prefix of the message list is remembered (per
model); a later request whose messages before the last one repeat a remembered prefix reports that
prefix's tokens as `cached_tokens`.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import accumulate
from typing import Any

from capstan.testing.simulator import text
from capstan.testing.simulator.openai_errors import (
    OpenAIError,
    invalid_type,
    invalid_value,
    missing,
)
from capstan.testing.simulator.prompt_cache import PromptCache, prefix_keys
from capstan.testing.simulator.tool_use import ToolSpec, tools_to_call

ROLES = ("system", "assistant", "user", "function", "tool", "developer")
PART_TYPES = ("text", "image_url", "input_audio", "refusal", "file")
IMAGE_TOKENS = 85
TOOL_CHOICES = ("none", "auto", "required")
RESPONSE_FORMATS = ("text", "json_object", "json_schema")

# Optional parameters and the JSON types they accept (null is accepted for every one of them).
SCALARS: dict[str, tuple[str, ...]] = {
    "max_tokens": ("integer",),
    "max_completion_tokens": ("integer",),
    "n": ("integer",),
    "seed": ("integer",),
    "top_logprobs": ("integer",),
    "temperature": ("number",),
    "top_p": ("number",),
    "presence_penalty": ("number",),
    "frequency_penalty": ("number",),
    "stream": ("boolean",),
    "logprobs": ("boolean",),
    "parallel_tool_calls": ("boolean",),
    "store": ("boolean",),
    "user": ("string",),
    "stop": ("string", "array"),
    "metadata": ("object",),
    "logit_bias": ("object",),
    "response_format": ("object",),
    "stream_options": ("object",),
    "tools": ("array",),
    "tool_choice": ("string", "object"),
}
EXPECTED = {
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "string": "a string",
    "array": "an array",
    "object": "an object",
}


def validate_chat(body: dict[str, Any]) -> None:
    """Raise the `OpenAIError` the real API answers `body` with, if any."""
    model = body.get("model")
    if model is None:
        raise OpenAIError(400, "you must provide a model parameter")
    if not isinstance(model, str):
        raise invalid_type("model", "a string", model)
    for name, kinds in SCALARS.items():
        value = body.get(name)
        if value is not None and not any(_is(value, kind) for kind in kinds):
            raise invalid_type(name, " or ".join(EXPECTED[kind] for kind in kinds), value)
    _validate_messages(body.get("messages"))
    _validate_limits(body)
    _validate_tools(body)
    _validate_response_format(body)
    if body.get("stream_options") is not None and not body.get("stream"):
        raise OpenAIError(
            400,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    return isinstance(value, dict)


def _validate_messages(messages: Any) -> None:
    if messages is None:
        raise missing("messages")
    if not isinstance(messages, list):
        raise invalid_type("messages", "an array of objects", messages)
    if not messages:
        raise OpenAIError(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got "
            "an empty array instead.",
            param="messages",
            code="empty_array",
        )
    for index, message in enumerate(messages):
        _validate_message(index, message)
    _validate_tool_turns(messages)


def _validate_message(index: int, message: Any) -> None:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise invalid_type(where, "an object", message)
    role = message.get("role")
    if role is None:
        raise missing(f"{where}.role")
    if role not in ROLES:
        raise invalid_value(f"{where}.role", role, ROLES)
    calls = message.get("tool_calls")
    if calls is not None and (
        not isinstance(calls, list) or not all(isinstance(call, dict) for call in calls)
    ):
        raise invalid_type(f"{where}.tool_calls", "an array of objects", calls)
    for position, call in enumerate(calls or []):
        if not isinstance(call.get("id"), str):
            raise missing(f"{where}.tool_calls[{position}].id")
    content = message.get("content")
    if content is None:
        if role == "assistant" and (calls or message.get("function_call")):
            return
        if role != "assistant":
            raise missing(f"{where}.content")
        return
    if isinstance(content, str):
        pass
    elif isinstance(content, list):
        for position, part in enumerate(content):
            _validate_part(f"{where}.content[{position}]", part)
    else:
        raise invalid_type(f"{where}.content", "one of a string or array of objects", content)
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise missing(f"{where}.tool_call_id")


def _validate_part(where: str, part: Any) -> None:
    if not isinstance(part, dict):
        raise invalid_type(where, "an object", part)
    kind = part.get("type")
    if kind is None:
        raise missing(f"{where}.type")
    if kind not in PART_TYPES:
        raise invalid_value(f"{where}.type", kind, PART_TYPES)
    if kind == "text" and not isinstance(part.get("text"), str):
        raise missing(f"{where}.text")
    if kind == "image_url":
        image = part.get("image_url")
        if not isinstance(image, dict) or not isinstance(image.get("url"), str):
            raise missing(f"{where}.image_url.url")


def _validate_tool_turns(messages: list[dict[str, Any]]) -> None:
    """Tool results must answer the assistant's `tool_calls`, every one of them, right after."""
    asked: set[str] = set()
    pending: set[str] = set()
    for index, message in enumerate(messages):
        role = message["role"]
        if role == "tool":
            if not asked:
                raise OpenAIError(
                    400,
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    param=f"messages.[{index}].role",
                )
            call_id = message["tool_call_id"]
            if call_id not in asked:
                raise OpenAIError(
                    400,
                    f"Invalid parameter: 'tool_call_id' of '{call_id}' not found in 'tool_calls' "
                    "of previous message.",
                    param=f"messages.[{index}].tool_call_id",
                )
            pending.discard(call_id)
            continue
        if pending:
            raise _unanswered(pending)
        calls = message.get("tool_calls") if role == "assistant" else None
        asked = {call["id"] for call in calls or []}
        pending = set(asked)
    if pending:
        raise _unanswered(pending)


def _unanswered(ids: set[str]) -> OpenAIError:
    return OpenAIError(
        400,
        "An assistant message with 'tool_calls' must be followed by tool messages responding to "
        "each 'tool_call_id'. The following tool_call_ids did not have response messages: "
        + ", ".join(sorted(ids)),
        param="messages",
    )


def _validate_limits(body: dict[str, Any]) -> None:
    for name in ("max_tokens", "max_completion_tokens", "n"):
        value = body.get(name)
        if value is not None and value < 1:
            raise OpenAIError(
                400,
                f"Invalid '{name}': integer below minimum value. Expected a value >= 1, but got "
                f"{value} instead.",
                param=name,
                code="integer_below_min_value",
            )
    for name, highest in (("temperature", 2), ("top_p", 1)):
        value = body.get(name)
        if value is not None and not 0 <= value <= highest:
            raise OpenAIError(
                400,
                f"Invalid '{name}': expected a value between 0 and {highest}, but got {value} "
                "instead.",
                param=name,
                code="invalid_value",
            )
    stop = body.get("stop")
    if isinstance(stop, list) and (len(stop) > 4 or not all(isinstance(s, str) for s in stop)):
        raise invalid_type("stop", "a string or an array of at most 4 strings", stop)
    top = body.get("top_logprobs")
    if top is not None and not 0 <= top <= 20:
        raise OpenAIError(
            400,
            f"Invalid 'top_logprobs': expected a value between 0 and 20, but got {top} instead.",
            param="top_logprobs",
            code="invalid_value",
        )


def _validate_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools") or []
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise invalid_type(f"tools[{index}]", "an object", tool)
        if tool.get("type", "function") == "function":
            function = tool.get("function")
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise missing(f"tools[{index}].function.name")
    choice = body.get("tool_choice")
    if choice is None:
        return
    if not tools:
        raise OpenAIError(
            400,
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
            "specified.",
            param="tool_choice",
        )
    if isinstance(choice, str):
        if choice not in TOOL_CHOICES:
            raise invalid_value("tool_choice", choice, TOOL_CHOICES)
        return
    function = choice.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str):
        raise missing("tool_choice.function.name")
    if name not in {tool.name for tool in function_tools(body)}:
        raise OpenAIError(
            400,
            f"Invalid value for 'tool_choice': function '{name}' is not one of the tools.",
            param="tool_choice",
            code="invalid_value",
        )


def _validate_response_format(body: dict[str, Any]) -> None:
    response_format = body.get("response_format")
    if response_format is None:
        return
    kind = response_format.get("type")
    if kind not in RESPONSE_FORMATS:
        raise invalid_value("response_format.type", kind, RESPONSE_FORMATS)
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict):
            raise missing("response_format.json_schema")
        if not isinstance(spec.get("name"), str):
            raise missing("response_format.json_schema.name")
    if kind == "json_object" and "json" not in " ".join(message_texts(body)).lower():
        raise OpenAIError(
            400,
            "'messages' must contain the word 'json' in some form, to use 'response_format' of "
            "type 'json_object'.",
            param="messages",
        )


def function_tools(body: dict[str, Any]) -> list[ToolSpec]:
    return [
        ToolSpec(tool["function"]["name"], tool["function"].get("parameters") or {})
        for tool in body.get("tools") or []
        if tool.get("type", "function") == "function"
    ]


def chosen_tools(body: dict[str, Any]) -> list[ToolSpec]:
    """The tools the simulated model calls: none when it should answer in text (no tools,
    `tool_choice: none`, or the last message is a tool result), the named one, else the first
    (the first two when parallel calls are allowed and at least two tools are offered)."""
    tools = function_tools(body)
    choice = body.get("tool_choice")
    last_role = body["messages"][-1]["role"]
    if not tools or choice == "none" or last_role in ("tool", "function"):
        return []
    named = choice["function"]["name"] if isinstance(choice, dict) else None
    parallel = body.get("parallel_tool_calls") is not False
    return tools_to_call(tools, named=named, parallel=parallel)


def _content_texts(content: Any) -> Iterable[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if part.get("type") in ("text", "refusal"):
                yield str(part.get("text") or part.get("refusal") or "")


def message_texts(body: dict[str, Any]) -> list[str]:
    return [text for m in body["messages"] for text in _content_texts(m.get("content"))]


def message_tokens(message: dict[str, Any]) -> int:
    content = message.get("content")
    images = (
        sum(1 for part in content if part.get("type") == "image_url")
        if isinstance(content, list)
        else 0
    )
    words = sum(text.count_tokens(t) for t in _content_texts(content))
    return words + IMAGE_TOKENS * images


def prompt_tokens(body: dict[str, Any]) -> int:
    return sum(message_tokens(message) for message in body["messages"])


def prompt_text(body: dict[str, Any]) -> str:
    """What the reply echoes: the text of the last user (or tool) message."""
    for message in reversed(body["messages"]):
        if message["role"] in ("user", "tool"):
            words = " ".join(_content_texts(message.get("content")))
            if words.strip():
                return words
    return ""


def cached_tokens(model: str, messages: list[dict[str, Any]], cache: PromptCache) -> int:
    """Tokens of the longest remembered prefix of `messages` (the last message excluded), then
    remember every prefix of this request for the requests that follow."""
    keys = prefix_keys("openai", model, messages)
    running = accumulate(message_tokens(message) for message in messages)
    return cache.longest_seen(list(zip(keys, running, strict=True)), lookups=len(messages) - 1)
