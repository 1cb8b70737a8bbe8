"""Prompt management: versioned prompts, labels, sandboxed rendering, experiments.

Applications fetch their prompts with `capstan.prompts.get("support-reply")` (see `client`).
Those names are loaded on first use, so the server's imports of `capstan.prompts.service` and
the rest never load the client or httpx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from capstan.prompts.client import (
        Prompt,
        PromptClient,
        PromptClientError,
        PromptNotFound,
        PromptUnavailable,
        get,
    )

__all__ = [
    "Prompt",
    "PromptClient",
    "PromptClientError",
    "PromptNotFound",
    "PromptUnavailable",
    "get",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("capstan.prompts.client"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
