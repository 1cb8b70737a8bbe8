"""OpenAI Chat Completions ⇄ Anthropic Messages, for an OpenAI-shaped request reaching Claude.

Pure functions on plain dicts (no I/O), so every mapping decision is unit-tested without a server.
`to_messages_body` turns a Chat Completions request into a Messages API body and refuses, with a
`TranslationError` naming the parameter, what Anthropic cannot express (`n` > 1, `logprobs`,
`response_format` JSON modes, audio). `to_chat_completion` turns a Message back into a
`chat.completion`. The streaming direction lives in `anthropic_stream`.

Choices made where the two formats disagree (each documented where it is made):
- every `system`/`developer` message, wherever it sits, becomes a `system` block, in order:
  Anthropic has no mid-conversation system turn;
- consecutive turns of one role are merged into one turn (tool results first), because tool
  results must open the user turn that follows the assistant's `tool_use`;
- `temperature` is clamped to Anthropic's 0..1 (OpenAI allows up to 2); with `reasoning_effort`
  set, `temperature`, `top_p` and `top_k` are dropped, since Anthropic refuses most values of
  them alongside extended thinking;
- sampling knobs Anthropic lacks and that do not change the answer's shape
  (`frequency_penalty`, `presence_penalty`, `seed`, `logit_bias`, `store`, `metadata`,
  `service_tier`, `prediction`) are dropped rather than refused: clients set them casually;
- `cache_control` on a content part or a tool (an extension of the OpenAI shape, as other
  Anthropic-aware gateways accept it) is passed on, so OpenAI-SDK clients can use prompt caching;
- thinking blocks come back as `reasoning_content` (the usual gateway extension) plus
  `thinking_blocks` carrying their signatures, which a client may send back on an assistant
  message so that a thinking-and-tools conversation can continue (Anthropic checks signatures).
"""

from __future__ import annotations

from typing import Any

from capstan.gateway.providers.base import ChatCompletion, ChatRequest, TranslationError
from capstan.gateway.providers.media import image_url, inline_data
from capstan.gateway.providers.openai_request import (
    arguments_object,
    max_output_tokens,
    refuse_params,
    require_one_choice,
    stop_sequences,
)
from capstan.gateway.providers.openai_shapes import (
    arguments_text,
    assistant_message,
    chat_completion,
    completion_choice,
    token_usage,
    tool_call,
)

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
MIN_THINKING_BUDGET = 1024  # Anthropic's floor for `thinking.budget_tokens`

# OpenAI `reasoning_effort` → Anthropic thinking budget (tokens); "none" turns thinking off.
THINKING_BUDGETS: dict[str, int] = {"minimal": 1024, "low": 1024, "medium": 2048, "high": 4096}

_REFUSALS = {
    "functions": "the legacy `functions` parameter is not supported: use `tools`",
    "function_call": "the legacy `function_call` parameter is not supported: use `tool_choice`",
}

FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: str | None) -> str:
    """The OpenAI finish reason of an Anthropic stop reason (unknown or absent → "stop")."""
    return FINISH_REASONS.get(stop_reason or "", "stop")


# ---------------------------------------------------------------------------------------------
# Request: OpenAI → Anthropic


def to_messages_body(request: ChatRequest) -> dict[str, Any]:
    """A Messages API body for an OpenAI Chat Completions request (without `stream`)."""
    _refuse_unsupported(request)
    system, messages = _conversation(request.get("messages") or [])
    max_tokens = max_output_tokens(request)
    if max_tokens is None:  # Anthropic requires it
        max_tokens = DEFAULT_MAX_TOKENS
    body: dict[str, Any] = {"model": request.get("model"), "max_tokens": max_tokens}
    if system:
        body["system"] = system
    body["messages"] = messages
    thinking = _thinking(request.get("reasoning_effort"), max_tokens)
    if thinking is not None:
        body["thinking"] = thinking
    else:
        # Anthropic refuses sampling parameters alongside thinking; with it off they pass.
        if request.get("temperature") is not None:
            body["temperature"] = min(max(float(request["temperature"]), 0.0), 1.0)
        if request.get("top_p") is not None:
            body["top_p"] = request["top_p"]
        if request.get("top_k") is not None:  # an extension some OpenAI clients send
            body["top_k"] = request["top_k"]
    stop = stop_sequences(request)
    if stop:
        body["stop_sequences"] = stop
    _add_tools(body, request)
    user = request.get("user") or request.get("safety_identifier")
    if user:
        body["metadata"] = {"user_id": str(user)}
    return body


def _refuse_unsupported(request: ChatRequest) -> None:
    require_one_choice(request, "Anthropic")
    if request.get("logprobs") or request.get("top_logprobs") is not None:
        raise TranslationError("Anthropic models do not return log probabilities", param="logprobs")
    response_format = request.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") not in (None, "text"):
        raise TranslationError(
            "Anthropic models have no JSON mode: `response_format` must be text; "
            "describe the JSON shape in the prompt or use a tool instead",
            param="response_format",
        )
    if request.get("audio") is not None or "audio" in (request.get("modalities") or []):
        raise TranslationError("Anthropic models do not produce audio", param="modalities")
    refuse_params(request, _REFUSALS)


def _thinking(effort: Any, max_tokens: int) -> dict[str, Any] | None:
    """Extended thinking for an OpenAI `reasoning_effort`. The budget is part of `max_tokens` on
    both sides (OpenAI counts reasoning in `max_completion_tokens`), so it is clamped below it."""
    if effort is None or effort == "none":
        return None
    if effort not in THINKING_BUDGETS:
        raise TranslationError(f"unknown reasoning_effort {effort!r}", param="reasoning_effort")
    budget = min(THINKING_BUDGETS[effort], max_tokens - 1)
    if budget < MIN_THINKING_BUDGET:
        raise TranslationError(
            f"reasoning on Anthropic models needs max_tokens above {MIN_THINKING_BUDGET}",
            param="reasoning_effort",
        )
    return {"type": "enabled", "budget_tokens": budget}


def _conversation(
    messages: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for position, message in enumerate(messages):
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_text_blocks(message.get("content"), position))
            continue
        if role == "user":
            blocks, anthropic_role = _user_blocks(message.get("content"), position), "user"
        elif role == "assistant":
            blocks, anthropic_role = _assistant_blocks(message, position), "assistant"
        elif role == "tool":
            blocks, anthropic_role = [_tool_result(message, position)], "user"
        else:
            raise TranslationError(
                f"messages[{position}]: role {role!r} is not supported", param="messages"
            )
        if not blocks:
            continue  # Anthropic refuses empty turns
        if turns and turns[-1]["role"] == anthropic_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": anthropic_role, "content": blocks})
    return system, turns


def _text_blocks(content: Any, position: int) -> list[dict[str, Any]]:
    """Text blocks for a string or a list of text parts, empty texts left out (Anthropic
    refuses them); a part's `cache_control` marker is kept."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content:
        if part.get("type") not in ("text", "refusal"):
            raise TranslationError(
                f"messages[{position}]: only text parts are allowed here", param="messages"
            )
        text = part.get("text") or part.get("refusal") or ""
        if text:
            blocks.append(_cached({"type": "text", "text": text}, part))
    return blocks


def _cached(block: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """`block` with the OpenAI part's `cache_control` marker, an extension that clients of
    Anthropic-aware gateways put on content parts and tools to ask for prompt caching."""
    if part.get("cache_control"):
        block["cache_control"] = part["cache_control"]
    return block


def _user_blocks(content: Any, position: int) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return _text_blocks(content, position)
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            blocks.extend(_text_blocks([part], position))
        elif kind == "image_url":
            source = _media_source(image_url(part), position)
            blocks.append(_cached({"type": "image", "source": source}, part))
        elif kind == "file":
            blocks.append(_cached(_document(part.get("file") or {}, position), part))
        else:
            raise TranslationError(
                f"messages[{position}]: content part {kind!r} is not supported by Anthropic",
                param="messages",
            )
    return blocks


def _media_source(url: str, position: int) -> dict[str, Any]:
    """A data: URL becomes a base64 source, an http(s) URL a url source."""
    if url.startswith("data:"):
        inline = inline_data(url)
        if inline is None:
            raise TranslationError(
                f"messages[{position}]: data URLs must be base64-encoded", param="messages"
            )
        return {"type": "base64", "media_type": inline.media_type, "data": inline.data}
    if url.startswith(("https://", "http://")):
        return {"type": "url", "url": url}
    raise TranslationError(
        f"messages[{position}]: an image must be a data: or http(s) URL", param="messages"
    )


def _document(file: dict[str, Any], position: int) -> dict[str, Any]:
    """An OpenAI `file` part carrying a PDF inline becomes a document block; file ids refer to
    OpenAI's file store, which Anthropic cannot read."""
    data = file.get("file_data")
    if not isinstance(data, str):
        raise TranslationError(
            f"messages[{position}]: only inline `file_data` files can reach Anthropic",
            param="messages",
        )
    source = _media_source(data, position)
    if source.get("media_type") != "application/pdf":
        raise TranslationError(
            f"messages[{position}]: only PDF files can reach Anthropic", param="messages"
        )
    block: dict[str, Any] = {"type": "document", "source": source}
    if file.get("filename"):
        block["title"] = file["filename"]
    return block


def _assistant_blocks(message: dict[str, Any], position: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for thinking in message.get("thinking_blocks") or []:
        if thinking.get("type") in ("thinking", "redacted_thinking"):
            blocks.append(dict(thinking))  # signed by Anthropic: sent back untouched
    blocks.extend(_text_blocks(message.get("content"), position))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": parse_arguments(function.get("arguments")),
            }
        )
    return blocks


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """Tool-call arguments as the JSON object Anthropic's `input` must be. Text that is not a
    JSON object is kept under `_raw_arguments` rather than lost, so the conversation can still
    continue and the oddity stays visible."""
    parsed = arguments_object(arguments)
    return {"_raw_arguments": arguments} if parsed is None else parsed


def _tool_result(message: dict[str, Any], position: int) -> dict[str, Any]:
    content = message.get("content")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.get("tool_call_id")}
    if isinstance(content, str):
        result["content"] = content
    else:
        result["content"] = _text_blocks(content, position)
    return result


def _add_tools(body: dict[str, Any], request: ChatRequest) -> None:
    tools = request.get("tools")
    if not tools:
        return  # tool_choice without tools means nothing to Anthropic
    body["tools"] = [_tool(tool, i) for i, tool in enumerate(tools)]
    choice = request.get("tool_choice")
    if choice is None or choice == "auto":
        tool_choice: dict[str, Any] = {"type": "auto"}
    elif choice == "required":
        tool_choice = {"type": "any"}
    elif choice == "none":
        tool_choice = {"type": "none"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        tool_choice = {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    else:
        raise TranslationError(f"tool_choice {choice!r} is not supported", param="tool_choice")
    if request.get("parallel_tool_calls") is False and tool_choice["type"] != "none":
        tool_choice["disable_parallel_tool_use"] = True
    if choice is not None or "disable_parallel_tool_use" in tool_choice:
        body["tool_choice"] = tool_choice


def _tool(tool: dict[str, Any], index: int) -> dict[str, Any]:
    if tool.get("type") != "function":
        raise TranslationError(
            f"tools[{index}]: only function tools can reach Anthropic", param="tools"
        )
    function = tool.get("function") or {}
    converted: dict[str, Any] = {
        "name": function.get("name"),
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        converted["description"] = function["description"]
    return _cached(converted, tool)


# ---------------------------------------------------------------------------------------------
# Response: Anthropic → OpenAI


def chat_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """OpenAI usage from Anthropic usage. Anthropic's `input_tokens` excludes cached tokens;
    OpenAI's `prompt_tokens` includes them, so the cache reads and writes are added back."""
    cache_read = int(usage.get("cache_read_input_tokens") or 0)
    cache_creation = int(usage.get("cache_creation_input_tokens") or 0)
    details = usage.get("output_tokens_details")
    thinking = details.get("thinking_tokens") if isinstance(details, dict) else None
    return token_usage(
        int(usage.get("input_tokens") or 0) + cache_read + cache_creation,
        int(usage.get("output_tokens") or 0),
        cached=cache_read,
        cache_creation=cache_creation,
        reasoning=thinking,
    )


def to_chat_completion(message: dict[str, Any]) -> ChatCompletion:
    """A `chat.completion` for an Anthropic Message."""
    texts: list[str] = []
    reasoning: list[str] = []
    thinking_blocks: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    for block in message.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "thinking":
            reasoning.append(block.get("thinking") or "")
            thinking_blocks.append(block)
        elif kind == "redacted_thinking":
            thinking_blocks.append(block)
        elif kind == "tool_use":
            arguments = arguments_text(block.get("input"))
            tool_calls.append(tool_call(block.get("id"), block.get("name"), arguments))
    reply = assistant_message("".join(texts), tool_calls)
    if reasoning:
        reply["reasoning_content"] = "".join(reasoning)
    if thinking_blocks:
        reply["thinking_blocks"] = thinking_blocks
    return chat_completion(
        id=message.get("id") or "",
        model=message.get("model") or "",
        choices=[completion_choice(reply, finish_reason(message.get("stop_reason")))],
        usage=chat_usage(message.get("usage") or {}),
    )
