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
        if not isinstance(message, dict):
            raise invalid(f"messages[{index}] must be an object", f"messages[{index}]")
        role = message.get("role")
        if role not in roles:
            allowed = ", ".join(sorted(roles))
            where = f"messages[{index}].role"
            raise invalid(f"{where} must be one of {allowed}; got {role!r}", where)
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            where = f"messages[{index}].content"
            raise invalid(f"{where} must be a string or an array", where)
    return messages


# A field the gateway reads: its name, the types it may have, how the error names them, and
# whether it must be a positive number. Checked in one loop: a call per field costs about as
# much as the check itself, on every request.
_Check = tuple[str, tuple[type, ...], str, bool]


def _fields(body: dict[str, Any], checks: tuple[_Check, ...]) -> None:
    get = body.get
    for name, kinds, what, positive in checks:
        value = get(name)
        if value is None:
            continue
        if (
            (type(value) is bool and bool not in kinds)
            or not isinstance(value, kinds)
            or (positive and isinstance(value, int) and value < 1)
        ):
            raise invalid(f"`{name}` must be {what}", name)


_CHAT_FIELDS: tuple[_Check, ...] = (
    ("stream", (bool,), "a boolean", False),
    ("max_tokens", (int,), "a positive integer", True),
    ("max_completion_tokens", (int,), "a positive integer", True),
    ("n", (int,), "a positive integer", True),
    ("temperature", (int, float), "a number", False),
    ("top_p", (int, float), "a number", False),
    ("stop", (str, list), "a string or an array of strings", False),
    ("stream_options", (dict,), "an object", False),
)
_MESSAGES_FIELDS: tuple[_Check, ...] = (
    ("stream", (bool,), "a boolean", False),
    ("system", (str, list), "a string or an array of text blocks", False),
    ("stop_sequences", (list,), "an array of strings", False),
)
_EMBEDDINGS_FIELDS: tuple[_Check, ...] = (
    ("encoding_format", (str,), "'float' or 'base64'", False),
)


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
    _fields(body, _CHAT_FIELDS)
    _tools(body)
    return model


def embeddings_request(body: dict[str, Any]) -> str:
    model = _model(body)
    data = body.get("input")
    if data is None or data == "" or data == []:
        raise invalid("`input` is required and must not be empty", "input")
    if not isinstance(data, str | list):
        raise invalid("`input` must be a string or an array", "input")
    _fields(body, _EMBEDDINGS_FIELDS)
    return model


def messages_request(body: dict[str, Any]) -> str:
    """Validate an Anthropic Messages body; return the model asked for."""
    model = _model(body)
    _messages(body, ANTHROPIC_ROLES)
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise invalid("`max_tokens` is required and must be a positive integer", "max_tokens")
    _fields(body, _MESSAGES_FIELDS)
    _tools(body)
    return model


def count_tokens_request(body: dict[str, Any]) -> str:
    model = _model(body)
    _messages(body, ANTHROPIC_ROLES)
    return model
