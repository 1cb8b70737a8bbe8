"""What the simulated Bedrock model makes of a Converse request: validation and the reply.

Pure functions on the parsed JSON body, so the wire module only handles HTTP. Validation is
as strict as Bedrock's where an adapter could plausibly get it wrong (roles that do not
alternate, blank text, tool results without the matching tool use, tool blocks without a
`toolConfig`, bad image bytes), with messages worded like Bedrock's, so an adapter that passes
here is unlikely to be refused by the real service for its shape.

Token counting follows `text.count_tokens` (one word, one token); images count nothing.
Prompt caching: the content before the last `cachePoint` block (tools, then system, then
messages) is the cacheable prefix, identified by a hash of that content.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

from capstan.testing.simulator.prompt_cache import prefix_keys
from capstan.testing.simulator.text import (
    apply_stop,
    arguments_for,
    count_tokens,
    reasoning_text,
    reply_text,
    seed_of,
    split_words,
    truncated,
)
from capstan.testing.simulator.tool_use import ToolSpec, tools_to_call

IMAGE_FORMATS = frozenset({"png", "jpeg", "gif", "webp"})
_BLOCK_KINDS = frozenset(
    {"text", "image", "toolUse", "toolResult", "reasoningContent", "cachePoint"}
)


class ConverseValidationError(ValueError):
    """The request is malformed: Bedrock answers 400 ValidationException with this message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class ConverseCall:
    """The parts of a valid Converse request that shape the reply."""

    model: str
    prompt: str  # the last user turn's text, which the reply echoes
    max_tokens: int | None
    stop_sequences: tuple[str, ...]
    tool: ToolSpec | None  # the tool the model calls, or None for a text reply
    preamble: bool  # toolChoice auto: a few words before the call, as Claude does
    thinking_budget: int | None  # additionalModelRequestFields asked for reasoning
    input_tokens: int  # every input token, cached ones included
    cached_tokens: int  # the tokens before the last cachePoint
    cache_key: str | None  # identifies that prefix; None without a cachePoint


@dataclass(frozen=True, slots=True)
class Block:
    """One content block of the reply: `text`, `reasoningContent` or `toolUse`."""

    kind: str
    text: str = ""
    tool_use_id: str = ""
    name: str = ""
    input: dict[str, Any] | None = None
    signature: str = ""

    def as_json(self) -> dict[str, Any]:
        if self.kind == "toolUse":
            return {
                "toolUse": {"toolUseId": self.tool_use_id, "name": self.name, "input": self.input}
            }
        if self.kind == "reasoningContent":
            return {
                "reasoningContent": {
                    "reasoningText": {"text": self.text, "signature": self.signature}
                }
            }
        return {"text": self.text}

    def deltas(self) -> list[dict[str, Any]]:
        """The `delta` objects a stream sends for this block, in order."""
        if self.kind == "toolUse":
            raw = orjson.dumps(self.input).decode()
            third = max(1, len(raw) // 3)
            pieces = [raw[i : i + third] for i in range(0, len(raw), third)]
            return [{"toolUse": {"input": piece}} for piece in pieces]
        if self.kind == "reasoningContent":
            words = [{"reasoningContent": {"text": w}} for w in split_words(self.text)]
            return [*words, {"reasoningContent": {"signature": self.signature}}]
        return [{"text": word} for word in split_words(self.text)]

    def tokens(self) -> int:
        if self.kind == "toolUse":
            return count_tokens(orjson.dumps(self.input).decode())
        return count_tokens(self.text)


@dataclass(frozen=True, slots=True)
class Reply:
    blocks: tuple[Block, ...]
    stop_reason: str

    @property
    def output_tokens(self) -> int:
        return sum(block.tokens() for block in self.blocks)


def parse_call(model: str, body: Any) -> ConverseCall:
    """Validate a Converse request body; raises `ConverseValidationError` as Bedrock would."""
    if not isinstance(body, dict):
        raise ConverseValidationError("The request body must be a JSON object.")
    tools, choice = _tool_config(body.get("toolConfig"))
    system = body.get("system") or []
    if not isinstance(system, list):
        raise ConverseValidationError("The system field must be a list of SystemContentBlock.")
    for index, block in enumerate(system):
        if not isinstance(block, dict) or not ({"text", "cachePoint"} & set(block)):
            raise ConverseValidationError(f"Malformed SystemContentBlock at system.{index}.")
        if "text" in block:
            _require_text(block["text"], f"system.{index}")
    messages = _messages(body.get("messages"), has_tools=tools is not None)
    config = body.get("inferenceConfig") or {}
    max_tokens = _max_tokens(config.get("maxTokens"))
    _check_range(config, "temperature", 0.0, 1.0)
    _check_range(config, "topP", 0.0, 1.0)
    stops = config.get("stopSequences") or []
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise ConverseValidationError("stopSequences must be a list of non-empty strings.")
    last_user = next(m for m in reversed(messages) if m["role"] == "user")
    has_result = any("toolResult" in block for block in last_user["content"])
    tool = None
    if tools and choice != "none" and not has_result:
        (tool,) = tools_to_call(tools, named=choice)
    input_tokens, cached_tokens, cache_key = _count_input(model, body, messages)
    return ConverseCall(
        model=model,
        prompt=_text_of(last_user["content"]),
        max_tokens=max_tokens,
        stop_sequences=tuple(stops),
        tool=tool,
        preamble=choice == "auto",
        thinking_budget=_thinking_budget(body.get("additionalModelRequestFields")),
        input_tokens=input_tokens,
        cached_tokens=cached_tokens,
        cache_key=cache_key or None,
    )


def plan_reply(call: ConverseCall) -> Reply:
    """The deterministic answer: optional reasoning, then a tool call or an echoing text."""
    blocks: list[Block] = []
    seed = seed_of(call.model, call.prompt)
    if call.thinking_budget is not None:
        thought = reasoning_text(call.model, call.prompt, call.thinking_budget)
        blocks.append(Block("reasoningContent", text=thought, signature=f"sig-{seed:016x}"))
    if call.tool is not None:
        if call.preamble:
            blocks.append(Block("text", text=f"Calling {call.tool.name}."))
        blocks.append(
            Block(
                "toolUse",
                tool_use_id=f"tooluse_{seed_of(seed, call.tool.name):016x}",
                name=call.tool.name,
                input=arguments_for(call.tool.parameters, seed),
            )
        )
        return Reply(tuple(blocks), "tool_use")
    text = reply_text(call.model, call.prompt, call.max_tokens)
    stop_reason = "max_tokens" if truncated(call.max_tokens, text) else "end_turn"
    text, stop = apply_stop(text, list(call.stop_sequences))
    if stop is not None:
        stop_reason = "stop_sequence"
    if text:
        blocks.append(Block("text", text=text))
    return Reply(tuple(blocks), stop_reason)


def _tool_config(config: Any) -> tuple[list[ToolSpec] | None, str]:
    """The offered tools and the choice: `auto`, `any`, `none` (no tools) or a tool's name."""
    if config is None:
        return None, "none"
    if not isinstance(config, dict) or not isinstance(config.get("tools"), list):
        raise ConverseValidationError("The toolConfig field must contain a list of tools.")
    tools: list[ToolSpec] = []
    for index, entry in enumerate(config["tools"]):
        if isinstance(entry, dict) and "cachePoint" in entry:
            continue
        spec = entry.get("toolSpec") if isinstance(entry, dict) else None
        schema = (spec or {}).get("inputSchema", {})
        if (
            not isinstance(spec, dict)
            or not isinstance(spec.get("name"), str)
            or not (isinstance(schema, dict) and isinstance(schema.get("json"), dict))
        ):
            raise ConverseValidationError(
                f"Malformed toolSpec at toolConfig.tools.{index}: a name and an "
                "inputSchema.json object are required."
            )
        tools.append(ToolSpec(spec["name"], schema["json"]))
    if not tools:
        raise ConverseValidationError("The toolConfig field must contain at least one tool.")
    choice = config.get("toolChoice") or {"auto": {}}
    if (
        not isinstance(choice, dict)
        or len(choice) != 1
        or next(iter(choice))
        not in (
            "auto",
            "any",
            "tool",
        )
    ):
        raise ConverseValidationError("toolChoice must have exactly one of auto, any or tool.")
    if "tool" not in choice:
        return tools, next(iter(choice))
    name = (choice["tool"] or {}).get("name")
    if name not in {t.name for t in tools}:
        raise ConverseValidationError(f"The tool {name} in toolChoice is not in toolConfig.tools.")
    return tools, str(name)


def _messages(messages: Any, *, has_tools: bool) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise ConverseValidationError("The messages field must contain at least one message.")
    previous_tool_ids: set[str] = set()
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            raise ConverseValidationError(
                f"The role at messages.{index} must be user or assistant."
            )
        expected = "user" if index % 2 == 0 else "assistant"
        if role != expected:
            raise ConverseValidationError(
                "A conversation must start with a user message and alternate between user "
                "and assistant roles. Try again with a conversation that alternates."
            )
        content = message.get("content")
        if not isinstance(content, list) or not content:
            raise ConverseValidationError(f"The content field in messages.{index} is empty.")
        tool_ids: set[str] = set()
        for position, block in enumerate(content):
            where = f"messages.{index}.content.{position}"
            tool_ids |= _check_block(block, where, role, has_tools, previous_tool_ids)
        previous_tool_ids = tool_ids
    if not any(m["role"] == "user" for m in messages):
        raise ConverseValidationError("A conversation must contain a user message.")
    return messages


def _check_block(
    block: Any, where: str, role: str, has_tools: bool, previous_tool_ids: set[str]
) -> set[str]:
    """Validate one content block; returns the toolUse ids it declares."""
    kinds = set(block) & _BLOCK_KINDS if isinstance(block, dict) else set()
    if len(kinds) != 1 or len(block) != 1:
        raise ConverseValidationError(f"The ContentBlock object at {where} is malformed.")
    kind = kinds.pop()
    value = block[kind]
    if kind in ("toolUse", "toolResult") and not has_tools:
        raise ConverseValidationError(
            "The toolConfig field must be defined when using toolUse and toolResult content blocks."
        )
    if kind == "text":
        _require_text(value, where)
    elif kind == "image":
        _check_image(value, where)
    elif kind == "toolUse":
        if role != "assistant" or not isinstance(value, dict):
            raise ConverseValidationError(f"toolUse at {where} must be in an assistant turn.")
        if not isinstance(value.get("toolUseId"), str) or not isinstance(value.get("name"), str):
            raise ConverseValidationError(f"toolUse at {where} needs a toolUseId and a name.")
        return {value["toolUseId"]}
    elif kind == "toolResult":
        _check_tool_result(value, where, role, previous_tool_ids)
    return set()


def _check_tool_result(value: Any, where: str, role: str, previous_tool_ids: set[str]) -> None:
    if role != "user" or not isinstance(value, dict):
        raise ConverseValidationError(f"toolResult at {where} must be in a user turn.")
    if value.get("toolUseId") not in previous_tool_ids:
        raise ConverseValidationError(
            f"The toolUseId of the toolResult at {where} does not match any toolUse block "
            "of the previous turn."
        )
    content = value.get("content")
    if not isinstance(content, list) or not all(
        isinstance(item, dict) and len(item) == 1 and next(iter(item)) in ("text", "json", "image")
        for item in content
    ):
        raise ConverseValidationError(f"The toolResult content at {where} is malformed.")
    if value.get("status", "success") not in ("success", "error"):
        raise ConverseValidationError(f"The toolResult status at {where} must be success or error.")


def _check_image(value: Any, where: str) -> None:
    if not isinstance(value, dict) or value.get("format") not in IMAGE_FORMATS:
        raise ConverseValidationError(
            f"The image format at {where} must be one of {', '.join(sorted(IMAGE_FORMATS))}."
        )
    raw = (value.get("source") or {}).get("bytes")
    try:
        decoded = base64.b64decode(raw, validate=True) if isinstance(raw, str) else b""
    except binascii.Error:
        decoded = b""
    if not decoded:
        raise ConverseValidationError(f"The image at {where} has no valid base64 bytes.")


def _require_text(value: Any, where: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConverseValidationError(
            f"The text field in the ContentBlock object at {where} is blank. "
            "Add text to the text field, and try again."
        )


def _max_tokens(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConverseValidationError("maxTokens must be an integer of at least 1.")
    return value


def _check_range(config: dict[str, Any], name: str, low: float, high: float) -> None:
    value = config.get(name)
    if value is not None and (not isinstance(value, int | float) or not low <= value <= high):
        raise ConverseValidationError(f"{name} must be between {low:g} and {high:g}.")


def _thinking_budget(fields: Any) -> int | None:
    """The reasoning budget when Claude's `thinking` or Nova's `reasoningConfig` is switched
    on (1024 words when the request names none), else None."""
    if not isinstance(fields, dict):
        return None
    for key in ("thinking", "reasoningConfig", "reasoning_config"):
        setting = fields.get(key)
        if isinstance(setting, dict) and setting.get("type") == "enabled":
            budget = setting.get("budget_tokens")
            return budget if isinstance(budget, int) and budget > 0 else 1024
    return None


def _text_of(content: list[dict[str, Any]]) -> str:
    """The user's words in a turn: its text blocks, or else its tool results' content."""
    texts = [block["text"] for block in content if "text" in block]
    if not texts:
        for block in content:
            for item in (block.get("toolResult") or {}).get("content", []):
                texts.append(item["text"] if "text" in item else orjson.dumps(item).decode())
    return " ".join(texts)


def _count_input(model: str, body: dict[str, Any], messages: list[Any]) -> tuple[int, int, str]:
    """All input tokens, the tokens before the last cachePoint, and that prefix's hash
    (empty when there is no cachePoint)."""
    sequence: list[Any] = [
        *((body.get("toolConfig") or {}).get("tools") or []),
        *(body.get("system") or []),
        *(block for message in messages for block in message["content"]),
    ]
    total = cached = 0
    key = ""
    for prefix, block in zip(prefix_keys("bedrock", model, sequence), sequence, strict=True):
        if "cachePoint" in block:
            cached, key = total, prefix
            continue
        total += _block_tokens(block)
    return total, cached, key


def _block_tokens(block: dict[str, Any]) -> int:
    if "text" in block:
        return count_tokens(block["text"])
    if "image" in block:
        return 0
    if "toolResult" in block:
        return count_tokens(_text_of([block]))
    if "toolSpec" in block:
        spec = block["toolSpec"]
        return count_tokens(f"{spec['name']} {spec.get('description', '')}")
    return count_tokens(orjson.dumps(block).decode())
