"""OpenAI Chat Completions requests as Cohere `/v2/chat` bodies.

Strict by design: a feature Cohere v2 cannot express raises `TranslationError` naming the
parameter instead of being dropped, because a silently ignored `n=3` or `logit_bias` gives the
client an answer to a question it did not ask. Where the formats differ:

- `tool_choice` "required" and "none" become `REQUIRED` and `NONE`; "auto" is Cohere's default.
  Cohere cannot force one named function, so a named `tool_choice` is accepted only when that
  function is the only tool offered, where `REQUIRED` means the same thing.
- `parallel_tool_calls: false` is refused when tools are offered: Cohere may always answer with
  several calls and has no switch to stop it.
- `top_p` is clamped into Cohere's `p` range [0.01, 0.99]: OpenAI's common `top_p=1` ("no
  nucleus cut") would otherwise be a 400, and 0.99 is the nearest Cohere accepts.
- An assistant message carrying both content and tool calls goes to Cohere with that content
  as its `tool_plan`, the mirror of how answers are translated (`cohere_response.py`), so a
  tool round trip is lossless.
"""

from __future__ import annotations

from typing import Any

from capstan.gateway.providers.base import ChatRequest, TranslationError
from capstan.gateway.providers.media import image_url
from capstan.gateway.providers.openai_request import (
    max_output_tokens,
    refuse_params,
    require_one_choice,
    stop_sequences,
)
from capstan.gateway.providers.openai_shapes import tool_call

__all__ = ["chat_body"]

MIN_P, MAX_P = 0.01, 0.99
EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}
_UNSUPPORTED = {
    name: f"{name} is not supported: {reason}"
    for name, reason in {
        "logit_bias": "Cohere v2 has no logit bias",
        "top_logprobs": "Cohere v2 does not return alternative tokens",
        "logprobs": "Cohere v2 log probabilities are not translated to OpenAI's shape",
        "audio": "Cohere v2 does not produce audio",
        "prediction": "Cohere v2 has no predicted outputs",
        "functions": "legacy `functions` are not supported; use `tools`",
        "function_call": "legacy `function_call` is not supported; use `tool_choice`",
        "web_search_options": "Cohere v2 has no built-in web search",
    }.items()
}


def chat_body(model: str, request: ChatRequest) -> dict[str, Any]:
    """The `/v2/chat` body for an OpenAI Chat Completions request (without `stream`)."""
    _refuse_unsupported(request)
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise TranslationError("messages must be a non-empty list", param="messages")
    body: dict[str, Any] = {
        "model": model,
        "messages": [cohere_message(m, f"messages[{i}]") for i, m in enumerate(messages)],
    }
    tools = request.get("tools")
    if tools:
        body["tools"] = [cohere_tool(t, f"tools[{i}]") for i, t in enumerate(tools)]
    choice = cohere_tool_choice(request.get("tool_choice"), tools or [])
    if choice is not None:
        body["tool_choice"] = choice
    max_tokens = max_output_tokens(request)
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    stop = stop_sequences(request)
    if stop:
        body["stop_sequences"] = stop
    for ours, theirs in (
        ("temperature", "temperature"),
        ("seed", "seed"),
        ("frequency_penalty", "frequency_penalty"),
        ("presence_penalty", "presence_penalty"),
        ("top_k", "k"),
    ):
        if request.get(ours) is not None:
            body[theirs] = request[ours]
    if request.get("top_p") is not None:
        body["p"] = min(MAX_P, max(MIN_P, float(request["top_p"])))
    response_format = cohere_response_format(request.get("response_format"))
    if response_format is not None:
        body["response_format"] = response_format
    return body


def _refuse_unsupported(request: ChatRequest) -> None:
    require_one_choice(request, "Cohere v2")
    refuse_params(request, _UNSUPPORTED)
    if request.get("parallel_tool_calls") is False and request.get("tools"):
        raise TranslationError(
            "Cohere v2 cannot be limited to one tool call per turn", param="parallel_tool_calls"
        )
    modalities = request.get("modalities")
    if modalities and any(m != "text" for m in modalities):
        raise TranslationError("Cohere v2 only produces text", param="modalities")


def cohere_message(message: dict[str, Any], where: str) -> dict[str, Any]:
    role = message.get("role")
    content = message.get("content")
    if role in ("system", "developer"):
        return {"role": "system", "content": text_content(content, f"{where}.content")}
    if role == "user":
        return {"role": "user", "content": user_content(content, f"{where}.content")}
    if role == "assistant":
        return assistant_message(message, where)
    if role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message.get("tool_call_id"),
            "content": text_content(content, f"{where}.content"),
        }
    raise TranslationError(f"message role {role!r} is not supported", param=f"{where}.role")


def text_content(content: Any, where: str) -> str | list[dict[str, Any]]:
    """A string stays a string; text parts become Cohere text blocks; anything else fails."""
    if content is None or isinstance(content, str):
        return content or ""
    blocks: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        if part.get("type") != "text":
            raise TranslationError(
                f"content part type {part.get('type')!r} is not supported here",
                param=f"{where}[{i}]",
            )
        blocks.append({"type": "text", "text": part.get("text", "")})
    return blocks


def user_content(content: Any, where: str) -> str | list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return content or ""
    blocks: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        kind = part.get("type")
        if kind == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            image = part.get("image_url")
            block: dict[str, Any] = {"url": image_url(part)}
            if isinstance(image, dict) and image.get("detail"):
                block["detail"] = image["detail"]
            blocks.append({"type": "image_url", "image_url": block})
        else:
            raise TranslationError(
                f"content part type {kind!r} is not supported by Cohere", param=f"{where}[{i}]"
            )
    return blocks


def _plain_text(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return "".join(block["text"] for block in content)


def assistant_message(message: dict[str, Any], where: str) -> dict[str, Any]:
    content = message.get("content")
    if isinstance(content, list):  # assistant parts are text or refusal
        content = [
            {"type": "text", "text": p.get("text") or p.get("refusal") or ""} for p in content
        ]
    text = text_content(content, f"{where}.content")
    calls = message.get("tool_calls") or []
    if not calls:
        return {"role": "assistant", "content": text}
    out: dict[str, Any] = {"role": "assistant", "tool_calls": []}
    for i, call in enumerate(calls):
        if call.get("type", "function") != "function":
            raise TranslationError(
                "only function tool calls are supported", param=f"{where}.tool_calls[{i}]"
            )
        function = call.get("function") or {}
        arguments = function.get("arguments") or "{}"
        out["tool_calls"].append(tool_call(call.get("id"), function.get("name"), arguments))
    plan = _plain_text(text)
    if plan:
        out["tool_plan"] = plan
    return out


def cohere_tool(tool: dict[str, Any], where: str) -> dict[str, Any]:
    function = tool.get("function")
    if tool.get("type") != "function" or not isinstance(function, dict):
        raise TranslationError("only function tools are supported by Cohere", param=where)
    out: dict[str, Any] = {
        "name": function.get("name"),
        "parameters": function.get("parameters") or EMPTY_PARAMETERS,
    }
    if function.get("description"):
        out["description"] = function["description"]
    return {"type": "function", "function": out}


def cohere_tool_choice(choice: Any, tools: list[dict[str, Any]]) -> str | None:
    """`REQUIRED`, `NONE` or None (Cohere's automatic default); see the module docstring for
    the one case where a named function can be honoured."""
    if choice in (None, "auto"):
        return None
    if choice == "required":
        return "REQUIRED"
    if choice == "none":
        return "NONE"
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        offered = [(t.get("function") or {}).get("name") for t in tools]
        if offered == [name]:
            return "REQUIRED"
        raise TranslationError(
            "Cohere cannot force one named function among several tools; "
            "offer only that tool or use tool_choice 'required'",
            param="tool_choice",
        )
    raise TranslationError(f"tool_choice {choice!r} is not supported", param="tool_choice")


def cohere_response_format(response_format: Any) -> dict[str, Any] | None:
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return {"type": "json_object", "json_schema": schema} if schema else {"type": "json_object"}
    raise TranslationError(
        f"response_format type {kind!r} is not supported", param="response_format"
    )
