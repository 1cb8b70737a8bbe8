"""Reading a Messages API request the way Anthropic does: the same 400s for the same mistakes,
the same input-token accounting, and prompt caching at `cache_control` breakpoints.

Tokens are words (`text.count_tokens`): of the system prompt, of every text, thinking and
tool-result block, of a tool call's name and JSON input, and of each tool's name, description and
JSON schema; an image or a non-text document counts 85. The prompt is read in Anthropic's cache
order (tools, system, messages), and each block marked with `cache_control` ends a cacheable
prefix: the longest prefix seen before is read from the cache, the rest up to the last breakpoint
is written to it, and only the tokens after that are plain `input_tokens`. (The real minimum
cacheable length, 1024 tokens, is not simulated, so that small test prompts can exercise it.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from capstan.testing.simulator import text
from capstan.testing.simulator.prompt_cache import PromptCache, prefix_keys
from capstan.testing.simulator.tool_use import ToolSpec, tools_to_call

ROLES = ("user", "assistant")
BLOCK_TYPES = (
    "text",
    "image",
    "document",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
    "search_result",
    "server_tool_use",
    "web_search_tool_result",
)
TOOL_CHOICES = ("auto", "any", "tool", "none")
IMAGE_TOKENS = 85
MIN_THINKING_BUDGET = 1024


class InvalidRequest(ValueError):
    """A request Anthropic answers with 400 `invalid_request_error` and this message."""


@dataclass(frozen=True, slots=True)
class CacheUsage:
    input_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    ttl: str = "5m"


def validate_messages(body: dict[str, Any], *, needs_max_tokens: bool = True) -> None:
    """Raise `InvalidRequest` with the message the real API gives for `body`, if any."""
    for name in ("model", *(("max_tokens",) if needs_max_tokens else ()), "messages"):
        if name not in body:
            raise InvalidRequest(f"{name}: Field required")
    if not isinstance(body["model"], str):
        raise InvalidRequest("model: Input should be a valid string")
    if needs_max_tokens:
        max_tokens = body["max_tokens"]
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            raise InvalidRequest("max_tokens: Input should be a valid integer")
        if max_tokens < 1:
            raise InvalidRequest("max_tokens: Input should be greater than or equal to 1")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise InvalidRequest("messages: Input should be a valid list")
    if not messages:
        raise InvalidRequest("messages: at least one message is required")
    for index, message in enumerate(messages):
        _validate_message(index, message)
    _validate_tool_turns(messages)
    _validate_system(body.get("system"))
    stops = body.get("stop_sequences")
    if stops is not None and (
        not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)
    ):
        raise InvalidRequest("stop_sequences: Input should be a valid list of strings")
    _validate_sampling(body)
    _validate_tools(body)
    _validate_thinking(body, needs_max_tokens)


def _validate_sampling(body: dict[str, Any]) -> None:
    for name, highest in (("temperature", 1), ("top_p", 1)):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise InvalidRequest(f"{name}: Input should be a valid number")
        if not 0 <= value <= highest:
            bound = (
                "greater than or equal to 0" if value < 0 else f"less than or equal to {highest:g}"
            )
            raise InvalidRequest(f"{name}: Input should be {bound}")


def _validate_message(index: int, message: Any) -> None:
    where = f"messages.{index}"
    if not isinstance(message, dict):
        raise InvalidRequest(f"{where}: Input should be a valid dictionary")
    role = message.get("role")
    if role == "system":
        raise InvalidRequest(
            'messages: Unexpected role "system". The Messages API accepts a top-level `system` '
            'parameter, not "system" as an input message role.'
        )
    if role not in ROLES:
        raise InvalidRequest(f"{where}.role: Input should be 'user' or 'assistant'")
    if "content" not in message:
        raise InvalidRequest(f"{where}.content: Field required")
    content = message["content"]
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content: Input should be a valid list")
    for position, block in enumerate(content):
        _validate_block(f"{where}.content.{position}", block)


def _validate_block(where: str, block: Any) -> None:
    if not isinstance(block, dict):
        raise InvalidRequest(f"{where}: Input should be a valid dictionary")
    kind = block.get("type")
    if kind not in BLOCK_TYPES:
        expected = ", ".join(f"'{t}'" for t in BLOCK_TYPES)
        raise InvalidRequest(
            f"{where}: Input tag '{kind}' found using 'type' does not match any of the expected "
            f"tags: {expected}"
        )
    required = {
        "text": "text",
        "image": "source",
        "document": "source",
        "tool_use": "id",
        "tool_result": "tool_use_id",
        "thinking": "signature",
        "redacted_thinking": "data",
    }.get(kind)
    if required and required not in block:
        raise InvalidRequest(f"{where}.{kind}.{required}: Field required")


def _validate_tool_turns(messages: list[dict[str, Any]]) -> None:
    """Every `tool_use` must be answered by a `tool_result` in the next message, and every
    `tool_result` must answer a `tool_use` of the previous message."""
    for index, message in enumerate(messages):
        asked = set(_ids(message, "tool_use", "id"))
        answered = set(_ids(message, "tool_result", "tool_use_id"))
        previous = set(_ids(messages[index - 1], "tool_use", "id")) if index else set()
        stray = answered - previous
        if stray:
            raise InvalidRequest(
                f"messages.{index}.content.0: unexpected `tool_use_id` found in `tool_result` "
                f"blocks: {', '.join(sorted(stray))}. Each `tool_result` block must have a "
                "corresponding `tool_use` block in the previous message."
            )
        if asked and index + 1 < len(messages):
            missing = asked - set(_ids(messages[index + 1], "tool_result", "tool_use_id"))
            if missing:
                raise InvalidRequest(
                    f"messages.{index + 1}: `tool_use` ids were found without `tool_result` "
                    f"blocks immediately after: {', '.join(sorted(missing))}. Each `tool_use` "
                    "block must have a corresponding `tool_result` block in the next message."
                )


def _ids(message: dict[str, Any], kind: str, field: str) -> Iterator[str]:
    content = message.get("content")
    if isinstance(content, list):
        for block in content:
            if block.get("type") == kind:
                yield str(block.get(field))


def _validate_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise InvalidRequest("system: Input should be a valid string or list of text blocks")
    for index, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text" or "text" not in block:
            raise InvalidRequest(f"system.{index}: Input should be a valid text block")


def _validate_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise InvalidRequest("tools: Input should be a valid list")
    for index, tool in enumerate(tools or []):
        if not isinstance(tool, dict) or "name" not in tool:
            raise InvalidRequest(f"tools.{index}.custom.name: Field required")
        if _is_custom(tool) and "input_schema" not in tool:
            raise InvalidRequest(f"tools.{index}.custom.input_schema: Field required")
    choice = body.get("tool_choice")
    if choice is None:
        return
    if not isinstance(choice, dict) or choice.get("type") not in TOOL_CHOICES:
        raise InvalidRequest(
            "tool_choice: Input tag found using 'type' does not match any of the expected tags: "
            "'auto', 'any', 'tool', 'none'"
        )
    if choice["type"] == "tool":
        name = choice.get("name")
        if not isinstance(name, str):
            raise InvalidRequest("tool_choice.tool.name: Field required")
        if name not in {tool.name for tool in custom_tools(body)}:
            raise InvalidRequest(f"Tool '{name}' not found in provided tools")


def _validate_thinking(body: dict[str, Any], needs_max_tokens: bool) -> None:
    thinking = body.get("thinking")
    if thinking is None:
        return
    if not isinstance(thinking, dict):
        raise InvalidRequest("thinking: Input should be a valid dictionary")
    if thinking.get("type") == "disabled":
        return
    if thinking.get("type") != "enabled":
        raise InvalidRequest(
            "thinking: Input tag found using 'type' does not match any of the expected tags: "
            "'disabled', 'enabled'"
        )
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool):
        raise InvalidRequest("thinking.enabled.budget_tokens: Field required")
    if budget < MIN_THINKING_BUDGET:
        raise InvalidRequest(
            "thinking.enabled.budget_tokens: Input should be greater than or equal to "
            f"{MIN_THINKING_BUDGET}"
        )
    if needs_max_tokens and body["max_tokens"] <= budget:
        raise InvalidRequest(
            "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our "
            "documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
            "#max-tokens-and-context-window-size"
        )
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        raise InvalidRequest("Thinking may not be enabled when tool_choice forces tool use.")


def _is_custom(tool: dict[str, Any]) -> bool:
    return tool.get("type") in (None, "custom")


def custom_tools(body: dict[str, Any]) -> list[ToolSpec]:
    return [
        ToolSpec(str(tool["name"]), tool.get("input_schema") or {})
        for tool in body.get("tools") or []
        if _is_custom(tool)
    ]


def chosen_tools(body: dict[str, Any]) -> list[ToolSpec]:
    """The tools the simulated model calls: none when it should answer in text (no tools,
    `tool_choice` none, or the last message carries tool results), the named one, else the
    first (the first two when parallel use is allowed and at least two tools are offered)."""
    tools = custom_tools(body)
    choice = body.get("tool_choice") or {"type": "auto"}
    last = body["messages"][-1]
    if not tools or choice["type"] == "none" or any(_ids(last, "tool_result", "tool_use_id")):
        return []
    named = choice["name"] if choice["type"] == "tool" else None
    parallel = not choice.get("disable_parallel_tool_use", False)
    return tools_to_call(tools, named=named, parallel=parallel)


def thinking_budget(body: dict[str, Any]) -> int | None:
    thinking = body.get("thinking") or {}
    return int(thinking["budget_tokens"]) if thinking.get("type") == "enabled" else None


def _block_texts(block: dict[str, Any]) -> Iterator[str]:
    kind = block.get("type")
    if kind == "text":
        yield str(block.get("text", ""))
    elif kind == "thinking":
        yield str(block.get("thinking", ""))
    elif kind == "tool_use":
        yield str(block.get("name", "")) + " " + json.dumps(block.get("input") or {})
    elif kind == "tool_result":
        content = block.get("content")
        if isinstance(content, str):
            yield content
        elif isinstance(content, list):
            for inner in content:
                yield from _block_texts(inner)
    elif kind == "document":
        source = block.get("source") or {}
        if source.get("type") == "text":
            yield str(source.get("data", ""))


def _images(block: dict[str, Any]) -> int:
    kind = block.get("type")
    if kind == "image":
        return 1
    if kind == "document":
        return 0 if (block.get("source") or {}).get("type") == "text" else 1
    if kind == "tool_result" and isinstance(block.get("content"), list):
        return sum(_images(inner) for inner in block["content"])
    return 0


def block_tokens(block: dict[str, Any]) -> int:
    words = sum(text.count_tokens(t) for t in _block_texts(block))
    return words + IMAGE_TOKENS * _images(block)


def _tool_tokens(tool: dict[str, Any]) -> int:
    description = str(tool.get("description", ""))
    schema = json.dumps(tool.get("input_schema") or {})
    return text.count_tokens(f"{tool.get('name', '')} {description} {schema}")


def _segments(body: dict[str, Any]) -> Iterator[tuple[Any, int, dict[str, Any] | None]]:
    """The prompt in cache order: (what it is, its tokens, its cache_control or None)."""
    for tool in body.get("tools") or []:
        yield ("tool", tool), _tool_tokens(tool), tool.get("cache_control")
    system = body.get("system")
    if isinstance(system, str):
        yield ("system", system), text.count_tokens(system), None
    for block in system if isinstance(system, list) else []:
        yield ("system", block), block_tokens(block), block.get("cache_control")
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, str):
            yield (message["role"], content), text.count_tokens(content), None
            continue
        for block in content:
            yield (message["role"], block), block_tokens(block), block.get("cache_control")


def input_tokens(body: dict[str, Any]) -> int:
    """All the prompt's tokens, cached or not (what `count_tokens` reports)."""
    return sum(tokens for _, tokens, _ in _segments(body))


def cache_usage(model: str, body: dict[str, Any], cache: PromptCache) -> CacheUsage:
    """Split the prompt's tokens into read-from-cache, written-to-cache and plain input, and
    remember this request's cacheable prefixes."""
    segments = list(_segments(body))
    pieces = [[role, _without_cache_control(block)] for (role, block), _, _ in segments]
    total = 0
    breakpoints: list[tuple[str, int]] = []
    ttl = "5m"
    for key, (_, tokens, cache_control) in zip(
        prefix_keys("anthropic", model, pieces), segments, strict=True
    ):
        total += tokens
        if cache_control:
            breakpoints.append((key, total))
            ttl = str(cache_control.get("ttl", ttl))
    read = cache.longest_seen(breakpoints)
    written = breakpoints[-1][1] - read if breakpoints else 0
    return CacheUsage(total - read - written, written, read, ttl)


def _without_cache_control(block: Any) -> Any:
    if isinstance(block, dict):
        return {k: v for k, v in block.items() if k != "cache_control"}
    return block


def prompt_text(body: dict[str, Any]) -> str:
    """What the reply echoes: the text of the last user message (tool results included)."""
    for message in reversed(body["messages"]):
        if message["role"] != "user":
            continue
        content = message["content"]
        if isinstance(content, str):
            return content
        words = " ".join(t for block in content for t in _block_texts(block))
        if words.strip():
            return words
    return ""
