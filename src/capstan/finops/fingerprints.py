"""A request's prompt prefix, reduced to a hash: what tells repeated prompts apart without
keeping any of their text, so caching can be recommended where prompts repeat.

Providers cache a prompt's leading part (tools, system instructions, first messages) once it
is long enough (OpenAI and Anthropic: 1,024 tokens), so the fingerprint covers the tools, the
system or developer instructions and the first message after them, and only bodies big enough
to be cached are fingerprinted: short calls cost nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

# About 1,024 tokens of English at 4 bytes a token: no provider caches a shorter prompt.
CACHEABLE_BYTES = 4096
_INSTRUCTIONS = ("system", "developer")


def prompt_fingerprint(body: Mapping[str, Any], size: int) -> str | None:
    """32 hex digits identifying the prompt's cacheable prefix; None for a body too small to
    be cached, or one with no messages (embeddings)."""
    if size < CACHEABLE_BYTES:
        return None
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    prefix: list[Any] = [body.get("tools"), body.get("system")]
    for message in messages:
        prefix.append(message)
        if not isinstance(message, dict) or message.get("role") not in _INSTRUCTIONS:
            break
    try:
        encoded = orjson.dumps(prefix)
    except TypeError:  # not JSON: nothing a provider could cache either
        return None
    return hashlib.blake2b(encoded, digest_size=16).hexdigest()
