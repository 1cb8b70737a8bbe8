"""Tokens counted offline with the model family's own tokenizer, for calls whose provider
reported no usage (a stream cut short, an upstream that leaves `usage` out).

Only OpenAI's families have a tokenizer that can be had offline: `o200k_base` (GPT-4o,
GPT-4.1, GPT-4.5, GPT-5, the o-series, gpt-oss) and `cl100k_base` (GPT-4, GPT-3.5, the
text-embedding-3 and ada-002 embeddings). Anthropic publishes no tokenizer for Claude 3 and
later (only its `count_tokens` API), Gemini's and Cohere's SDKs download theirs, so every other
family gets None here and callers keep their estimate.

The tokenizer is `tiktoken`, OpenAI's own, with vocabularies loaded offline by
`finops/encodings.py`. Counting takes about 30 µs for a 1 KB chat body with o200k_base (50 µs
with cl100k_base) and 4 ms for a 150 KB one, against 1 µs for
`costing.estimate_prompt_tokens`: fine for the calls without usage, not for every call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from capstan.finops.encodings import get_encoding

# The chat format's overhead, as OpenAI's cookbook counts it ("How to count tokens with
# tiktoken", for gpt-3.5-turbo-0613 and every later chat model): each message costs 3 tokens
# (`<|start|>{role}<|message|>` around its role and content; the role's own token is counted
# as text), a `name` 1 more, and every reply is primed with `<|start|>assistant<|message|>`:
# 3 tokens per request.
TOKENS_PER_MESSAGE: Final = 3
TOKENS_PER_NAME: Final = 1
REPLY_PRIMING: Final = 3

# Tool definitions, by the same cookbook's rule: the tokens a function starts with depend on
# the model (7 for gpt-4o and gpt-4o-mini, 10 for gpt-4 and gpt-3.5-turbo), the rest do not.
_FUNCTION_START: Final[Mapping[str, int]] = {"o200k_base": 7, "cl100k_base": 10}
PROPERTIES_START: Final = 3
PER_PROPERTY: Final = 3
ENUM_START: Final = -3
PER_ENUM_ITEM: Final = 3
FUNCTIONS_END: Final = 12
_FLAT_SCHEMA_KEYS: Final = frozenset({"type", "properties", "required", "additionalProperties"})
_FLAT_PROPERTY_KEYS: Final = frozenset({"type", "description", "enum"})

# Model name prefixes (after any vendor prefix and `ft:`), first match wins: o200k's come
# before the `gpt-4` that would also match them. gpt-oss's o200k_harmony has o200k_base's
# vocabulary and split pattern, so plain text counts the same.
_PREFIXES: Final = (
    ("gpt-4o", "o200k_base"),
    ("chatgpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("gpt-oss", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("gpt-35", "cl100k_base"),  # Azure's spelling
    ("text-embedding-3", "cl100k_base"),
    ("text-embedding-ada-002", "cl100k_base"),
)

# Content parts whose text is counted, by type, and the key that holds it.
_TEXT_KEYS: Final[Mapping[str, str]] = {
    "text": "text",  # OpenAI chat, Anthropic
    "input_text": "text",  # OpenAI Responses
    "output_text": "text",
    "refusal": "refusal",
}
# Parts that cost nothing as input: prior reasoning, which the vendors drop or keep encrypted.
_FREE_PARTS: Final = frozenset({"thinking", "redacted_thinking", "reasoning"})


class _Uncountable(Exception):
    """A part no text tokenizer measures (an image, audio, a file): the count is unknown."""


def encoding_name(model: str) -> str | None:
    """The tiktoken encoding of `model`'s family, or None when it is not an OpenAI family.

    A vendor prefix (`openai/gpt-4o`, `azure/gpt-4o`) and a fine-tune's `ft:` are stripped,
    and case is ignored. Loads nothing.
    """
    name = model.rsplit("/", 1)[-1].strip().lower().removeprefix("ft:")
    for prefix, encoding in _PREFIXES:
        if name.startswith(prefix):
            return encoding
    return None


def count_text_tokens(model: str, text: str) -> int | None:
    """The tokens of `text` (a reply's output, say) in `model`'s tokenizer; None without one.

    Special-token strings such as `<|endoftext|>` count as the ordinary text they are.
    """
    name = encoding_name(model)
    encoding = get_encoding(name) if name is not None else None
    if encoding is None:
        return None
    return len(encoding.encode_ordinary(text))


def count_tokens(model: str, body: Mapping[str, Any]) -> int | None:
    """The prompt tokens of a request body in `model`'s tokenizer; None when the model's
    family has no offline tokenizer or the body holds a part no text tokenizer measures
    (an image, audio, a file), so the caller keeps its own estimate.

    Bodies: OpenAI chat (`messages`), OpenAI Responses (`instructions`, `input` items),
    embeddings (`input`: a string, strings, or token arrays counted by length), legacy
    completions (`prompt`) and Anthropic messages (`system`, `messages` with content blocks).
    Message content is a string or a list of parts, of which text, refusals, tool calls and
    tool results (with their own text parts) are counted, prior reasoning is free.

    Overhead follows OpenAI's cookbook ("How to count tokens with tiktoken"): 3 tokens per
    message (the role's text counted too) plus 1 for a `name`, and 3 for priming the reply
    once per chat request. A `system` or `instructions` field counts as one more message.
    Embeddings and completions carry no overhead. Function tools count by the cookbook's rule
    too ("Counting tokens for chat completions with tool calls": `name:description` and each
    `key:type:description` line, enum values, and fixed tokens per function, property and
    enum, 7 per function for o200k models and 10 for cl100k ones); a tool that rule does not
    describe (nested parameters, a vendor's built-in tool) counts as its compact JSON, which
    overstates what the model sees. Tool calls count their name and arguments, Anthropic's
    `tool_use` its name and JSON input.
    """
    name = encoding_name(model)
    encoding = get_encoding(name) if name is not None else None
    if encoding is None:
        return None
    try:
        prompt = _prompt(body, embedding="embedding" in model.lower())
    except _Uncountable:
        return None
    encode = encoding.encode_ordinary
    total = prompt.overhead + sum(len(encode(text)) for text in prompt.texts if text)
    if prompt.tools:
        total += _tools(prompt.tools, encode, _FUNCTION_START[encoding.name])
    return total


# -- the body's texts ---------------------------------------------------------------------


@dataclass(slots=True)
class _Texts:
    overhead: int
    texts: list[str]
    tools: list[Any]


def _prompt(body: Mapping[str, Any], *, embedding: bool) -> _Texts:
    """The fixed overhead, and every text the tokenizer must count, of a request body."""
    out = _Texts(0, [], [])
    chat = False
    for field in ("system", "instructions"):
        value = body.get(field)
        if value is not None:
            chat = True
            _message(out, {"role": "system", "content": value})
    messages = body.get("messages")
    if isinstance(messages, list):
        chat = True
        for message in messages:
            _message(out, message)
    value = body.get("input")
    if isinstance(value, str) and not embedding:  # Responses: one user message
        chat = True
        _message(out, {"role": "user", "content": value})
    elif isinstance(value, str):
        out.texts.append(value)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                out.texts.append(item)
            elif isinstance(item, int) and not isinstance(item, bool):
                out.overhead += 1  # one token id of an embeddings token array
            elif isinstance(item, list):
                out.overhead += len(item)  # a token array, one of several
            elif isinstance(item, Mapping):
                chat = True
                _message(out, item)
            else:
                raise _Uncountable
    prompt = body.get("prompt")
    if prompt is not None:
        out.texts.extend(_strings(prompt))
    for field in ("tools", "functions"):
        tools = body.get(field)
        if isinstance(tools, list):
            out.tools.extend(tools)
    if chat:
        out.overhead += REPLY_PRIMING
    return out


def _message(out: _Texts, message: Any) -> None:
    """One chat message, or one Responses input item, into `out`."""
    if not isinstance(message, Mapping):
        raise _Uncountable
    kind = message.get("type")
    if kind is not None and kind != "message":  # a Responses item that is not a message
        out.overhead += TOKENS_PER_MESSAGE
        _part(out, message)
        return
    out.overhead += TOKENS_PER_MESSAGE
    role = message.get("role")
    if isinstance(role, str):
        out.texts.append(role)
    name = message.get("name")
    if isinstance(name, str):
        out.texts.append(name)
        out.overhead += TOKENS_PER_NAME
    _content(out, message.get("content"))
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping):
            out.texts.extend(_strings(function.get("name")))
            out.texts.extend(_strings(function.get("arguments")))
    call = message.get("function_call")  # the legacy single call
    if isinstance(call, Mapping):
        out.texts.extend(_strings(call.get("name")))
        out.texts.extend(_strings(call.get("arguments")))


def _content(out: _Texts, content: Any) -> None:
    if content is None:
        return
    if isinstance(content, str):
        out.texts.append(content)
    elif isinstance(content, list):
        for part in content:
            _part(out, part)
    else:
        raise _Uncountable


def _part(out: _Texts, part: Any) -> None:
    """One content part (or Responses item), by its type; an unknown one is uncountable."""
    if isinstance(part, str):
        out.texts.append(part)
        return
    if not isinstance(part, Mapping):
        raise _Uncountable
    kind = part.get("type")
    key = _TEXT_KEYS.get(kind) if isinstance(kind, str) else None
    if key is not None:
        out.texts.extend(_strings(part.get(key)))
    elif kind in _FREE_PARTS:
        return
    elif kind == "tool_use":  # Anthropic: the call's name and its input as JSON
        out.texts.extend(_strings(part.get("name")))
        out.texts.append(_json(part.get("input")))
    elif kind == "tool_result":  # Anthropic: a string or a list of text parts
        _content(out, part.get("content"))
    elif kind in ("function_call", "custom_tool_call"):  # Responses
        out.texts.extend(_strings(part.get("name")))
        out.texts.extend(_strings(part.get("arguments", part.get("input"))))
    elif kind in ("function_call_output", "custom_tool_call_output"):  # Responses
        output = part.get("output")
        if isinstance(output, list):
            _content(out, output)
        else:
            out.texts.extend(_strings(output))
    else:
        raise _Uncountable


def _tools(tools: list[Any], encode: Callable[[str], list[int]], function_start: int) -> int:
    """Tool definitions by the cookbook's rule where it applies, else as compact JSON."""
    total = 0
    described = False
    for tool in tools:
        lines = _function_lines(tool)
        if lines is None:
            total += len(encode(_json(tool)))
            continue
        described = True
        total += function_start
        for line, fixed in lines:
            total += fixed + (len(encode(line)) if line else 0)
    return total + (FUNCTIONS_END if described else 0)


def _function_lines(tool: Any) -> list[tuple[str, int]] | None:
    """A function tool as the cookbook counts it: (text, fixed tokens) pairs; None when its
    shape is not the flat one the rule was measured on (OpenAI chat's `{"type": "function",
    "function": {...}}`, Responses' and legacy `functions`' bare `{name, description,
    parameters}`, Anthropic's `{name, description, input_schema}`)."""
    if not isinstance(tool, Mapping):
        return None
    function = tool.get("function", tool)
    if tool.get("type", "function") != "function" or not isinstance(function, Mapping):
        return None
    name, description = function.get("name"), function.get("description") or ""
    schema = function.get("parameters", function.get("input_schema")) or {}
    if not isinstance(name, str) or not isinstance(description, str):
        return None
    if not isinstance(schema, Mapping) or not set(schema) <= _FLAT_SCHEMA_KEYS:
        return None
    properties = schema.get("properties") or {}
    if not isinstance(properties, Mapping):
        return None
    lines = [(f"{name}:{description.removesuffix('.')}", 0)]
    if properties:
        lines.append(("", PROPERTIES_START))
    for key, spec in properties.items():
        if not isinstance(spec, Mapping) or not set(spec) <= _FLAT_PROPERTY_KEYS:
            return None
        kind, text = spec.get("type"), spec.get("description") or ""
        enum = spec.get("enum")
        if not isinstance(key, str) or not isinstance(kind, str) or not isinstance(text, str):
            return None
        lines.append((f"{key}:{kind}:{text.removesuffix('.')}", PER_PROPERTY))
        if enum is not None:
            if not isinstance(enum, list) or not all(isinstance(item, str) for item in enum):
                return None
            lines.append(("", ENUM_START))
            lines.extend((item, PER_ENUM_ITEM) for item in enum)
    return lines


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:  # a lone surrogate, nesting deeper than orjson goes
        raise _Uncountable from None


def _strings(value: Any) -> Iterator[str]:
    """A string, or each string of a list of them; anything else is uncountable."""
    if value is None:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        yield from value
    else:
        raise _Uncountable
