"""Deterministic replies whose token counts agree with their text.

A token, for the simulator, is one whitespace-separated word: `count_tokens` and the replies use
the same rule, so usage always matches the text a client receives. Replies start with an echo of
the last user text, so a test can see its prompt survived every translation on the way.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

VOCABULARY = [
    "the",
    "model",
    "answers",
    "with",
    "care",
    "and",
    "the",
    "ledger",
    "stays",
    "balanced",
    "while",
    "every",
    "request",
    "is",
    "counted",
    "once",
    "audit",
    "trails",
    "remain",
    "intact",
    "and",
    "budgets",
    "hold",
    "under",
    "load",
    "so",
    "teams",
    "ship",
    "safely",
    "across",
    "vendors",
    "regions",
    "and",
    "replicas",
]
ECHO_WORDS = 12


def count_tokens(text: str) -> int:
    return len(text.split())


def seed_of(*parts: Any) -> int:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def reply_text(model: str, prompt: str, max_tokens: int | None, seed: int | None = None) -> str:
    """`Echo: <first words of the prompt>.` then filler words, at most `max_tokens` words."""
    rng = random.Random(seed_of(model, prompt, seed))  # noqa: S311 - test data, not crypto
    echo = prompt.split()[:ECHO_WORDS]
    words = ["Echo:", *echo] if echo else ["Hello"]
    words[-1] = words[-1] + "."
    length = rng.randint(8, 24)
    words += [rng.choice(VOCABULARY) for _ in range(length)]
    if max_tokens is not None:
        words = words[: max(1, max_tokens)]
    return " ".join(words)


def truncated(max_tokens: int | None, text: str) -> bool:
    """Whether `reply_text` stopped because of `max_tokens` (so the stop reason is 'length')."""
    return max_tokens is not None and count_tokens(text) >= max_tokens


def arguments_for(schema: dict[str, Any] | None, seed: int) -> dict[str, Any]:
    """Arguments that satisfy a tool's JSON schema (object properties, enums, basic types)."""
    rng = random.Random(seed)  # noqa: S311 - test data
    properties = (schema or {}).get("properties") or {}
    required = (schema or {}).get("required") or list(properties)
    return {name: _value(properties.get(name) or {}, name, rng) for name in required}


def _value(schema: dict[str, Any], name: str, rng: random.Random) -> Any:
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "integer":
        return rng.randint(1, 100)
    if kind == "number":
        return rng.randint(1, 1000) / 10
    if kind == "boolean":
        return True
    if kind == "array":
        return [_value(schema.get("items") or {}, name, rng)]
    if kind == "object":
        return arguments_for(schema, rng.randint(0, 2**31))
    return f"{name}-{rng.randint(1, 999)}"


def split_words(text: str) -> list[str]:
    """Stream pieces: each word with its leading space, so the pieces join back to `text`."""
    words = text.split(" ")
    return [words[0], *(" " + word for word in words[1:])]


def apply_stop(text: str, stops: list[str]) -> tuple[str, str | None]:
    """`text` cut before the earliest stop sequence, and which one matched (None if none did):
    vendors drop the stop sequence itself from the reply."""
    hits = [(text.find(stop), stop) for stop in stops if stop and stop in text]
    if not hits:
        return text, None
    position, stop = min(hits)
    return text[:position].rstrip(" "), stop


def reasoning_text(model: str, prompt: str, budget: int, seed: int | None = None) -> str:
    """A deterministic chain of thought for vendors that return one, at most `budget` words."""
    rng = random.Random(seed_of("reasoning", model, prompt, seed))  # noqa: S311 - test data
    echo = prompt.split()[:ECHO_WORDS]
    words = ["Considering:", *echo] if echo else ["Considering", "the", "request."]
    words += [rng.choice(VOCABULARY) for _ in range(rng.randint(6, 16))]
    return " ".join(words[: max(1, budget)])
