"""The simulated prompt caches: which prompt prefixes a vendor would still hold, so that a later
request repeating one reports cached tokens, as the real APIs do.

Every vendor keys a prefix the same way: a running hash over the vendor, the model and the
prompt's pieces in order (`prefix_keys`), so one key stands for one exact prefix. What counts as
a piece, and which prefixes may be cached, is the vendor's rule (each message, each turn, each
`cache_control` breakpoint); `PromptCache.longest_seen` is the shared bookkeeping.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson


def prefix_keys(vendor: str, model: str, pieces: Iterable[Any]) -> Iterator[str]:
    """The key of the prompt prefix ending with each of `pieces` (JSON values), in order."""
    digest = hashlib.sha256(f"{vendor}\x1f{model}".encode())
    for piece in pieces:
        digest.update(orjson.dumps(piece, option=orjson.OPT_SORT_KEYS))
        yield digest.hexdigest()


class PromptCache:
    """The prompt prefixes the simulated vendors hold, shared by all of them (keys carry the
    vendor); the oldest are forgotten first, as a real cache evicts."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[str, None] = OrderedDict()

    def seen(self, key: str) -> bool:
        if key in self._keys:
            self._keys.move_to_end(key)
            return True
        return False

    def remember(self, key: str) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self.capacity:
            self._keys.popitem(last=False)

    def longest_seen(
        self, prefixes: Sequence[tuple[str, int]], *, lookups: int | None = None
    ) -> int:
        """The tokens of the longest prefix already cached, given each prefix as (key, tokens up
        to its end) in prompt order, and only the first `lookups` of them eligible (all when
        None); then cache every prefix, as the vendor does after answering."""
        eligible = prefixes if lookups is None else prefixes[:lookups]
        hit = max((tokens for key, tokens in eligible if self.seen(key)), default=0)
        for key, _ in prefixes:
            self.remember(key)
        return hit

    def clear(self) -> None:
        self._keys.clear()
