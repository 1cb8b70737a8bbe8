"""Chain arithmetic, free of any database: canonical JSON, digests, entry hashes, verification.

An entry's hash is SHA-256 over the canonical JSON (sorted keys, no spaces, UTF-8) of its own
fields plus the previous entry's hash, so changing, inserting or deleting any row breaks every
hash after it. Resources are recorded as digests of their state before and after the change,
which proves what changed without copying data (secrets, personal data) into the log.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from capstan.clock import isoformat

GENESIS_HASH = "0" * 64
HASHED_FIELDS = (
    "seq",
    "time",
    "actor",
    "action",
    "resource_type",
    "resource_id",
    "before_digest",
    "after_digest",
)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return isoformat(value)
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot put {type(value).__name__} in canonical JSON")


def canonical_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_plain
    ).encode("utf-8")


def digest(state: Mapping[str, Any] | None) -> str | None:
    """SHA-256 of a resource's state, or None where there is no state (before a create)."""
    if state is None:
        return None
    return hashlib.sha256(canonical_json(dict(state))).hexdigest()


def entry_hash(fields: Mapping[str, Any], prev_hash: str) -> str:
    document = {name: fields[name] for name in HASHED_FIELDS}
    document["prev_hash"] = prev_hash
    return hashlib.sha256(canonical_json(document)).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainBreak:
    seq: int
    reason: str


def verify_chain(entries: Iterable[Mapping[str, Any]]) -> tuple[int, ChainBreak | None]:
    """Walk entries in seq order; return how many were checked and the first break, if any."""
    expected_seq = 1
    prev_hash = GENESIS_HASH
    checked = 0
    for entry in entries:
        seq = int(entry["seq"])
        if seq != expected_seq:
            return checked, ChainBreak(expected_seq, f"entry {expected_seq} is missing")
        if entry["prev_hash"] != prev_hash:
            return checked, ChainBreak(seq, "prev_hash does not match the previous entry")
        if entry_hash(entry, prev_hash) != entry["hash"]:
            return checked, ChainBreak(seq, "hash does not match the entry's contents")
        prev_hash = entry["hash"]
        expected_seq += 1
        checked += 1
    return checked, None
