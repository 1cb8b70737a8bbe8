"""Checks of the request shapes the gateway relies on, naming the offending field.

Deliberately shallow: the gateway validates what it reads (model, messages, roles, stream,
token limits, tools) and forwards everything else, so new vendor fields keep working; the
upstream validates the rest and its 4xx comes back to the client as a 4xx.
"""

from __future__ import annotations

from typing import Any

from capstan.gateway.errors import invalid

OPENAI_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
ANTHROPIC_ROLES = frozenset({"user", "assistant"})


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("`model` is required and must be a non-empty string", "model")
    return model


def _messages(body: dict[str, Any], roles: frozenset[str]) -> list[Any]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise invalid("`messages` is required and must be an array", "messages")
    if not messages:
        raise invalid("`messages` must not be empty", "messages")
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise invalid(f"{where} must be an object", where)
        role = message.get("role")
        if role not in roles:
            allowed = ", ".join(sorted(roles))
            raise invalid(f"{where}.role must be one of {allowed}; got {role!r}", f"{where}.role")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise invalid(f"{where}.content must be a string or an array", f"{where}.content")
    return messages


def _optional(body: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise invalid(f"`{name}` must be {what}", name)
    if not isinstance(value, kind):
        raise invalid(f"`{name}` must be {what}", name)


def _positive(body: dict[str, Any], name: str) -> None:
    _optional(body, name, int, "a positive integer")
    if body.get(name) is not None and body[name] < 1:
        raise invalid(f"`{name}` must be a positive integer", name)


def _tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is None:
        return
    if not isinstance(tools, list):
        raise invalid("`tools` must be an array", "tools")
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise invalid(f"tools[{index}] must be an object", f"tools[{index}]")


def chat_request(body: dict[str, Any]) -> str:
    """Validate an OpenAI chat-completions body; return the model asked for."""
    model = _model(body)
    _messages(body, OPENAI_ROLES)
    _optional(body, "stream", bool, "a boolean")
    _positive(body, "max_tokens")
    _positive(body, "max_completion_tokens")
    _positive(body, "n")
    _optional(body, "temperature", (int, float), "a number")
    _optional(body, "top_p", (int, float), "a number")
    _optional(body, "stop", (str, list), "a string or an array of strings")
    _optional(body, "stream_options", dict, "an object")
    _tools(body)
    return model


def embeddings_request(body: dict[str, Any]) -> str:
    model = _model(body)
    data = body.get("input")
    if data is None or data == "" or data == []:
        raise invalid("`input` is required and must not be empty", "input")
    if not isinstance(data, str | list):
        raise invalid("`input` must be a string or an array", "input")
    _optional(body, "encoding_format", str, "'float' or 'base64'")
    return model


def messages_request(body: dict[str, Any]) -> str:
    """Validate an Anthropic Messages body; return the model asked for."""
    model = _model(body)
    _messages(body, ANTHROPIC_ROLES)
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise invalid("`max_tokens` is required and must be a positive integer", "max_tokens")
    _optional(body, "stream", bool, "a boolean")
    _optional(body, "system", (str, list), "a string or an array of text blocks")
    _optional(body, "stop_sequences", list, "an array of strings")
    _tools(body)
    return model


def count_tokens_request(body: dict[str, Any]) -> str:
    model = _model(body)
    _messages(body, ANTHROPIC_ROLES)
    return model
