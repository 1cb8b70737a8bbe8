"""Identifiers: UUIDv7 everywhere, so ids sort by creation time and keyset pagination is cheap."""

from __future__ import annotations

import uuid

import uuid_utils
import uuid_utils.compat as _uuid_compat


def new_id() -> uuid.UUID:
    """A fresh UUIDv7 as a standard-library `uuid.UUID` (time-ordered, 74 random bits)."""
    return _uuid_compat.uuid7()


def new_id_text() -> str:
    """A fresh UUIDv7 in its text form, without building a `uuid.UUID` (the data plane makes
    one per request, and only ever needs the text)."""
    return str(uuid_utils.uuid7())


def parse_id(text: str) -> uuid.UUID | None:
    """The UUID in `text`, or None when it is not one (callers then look the value up by name)."""
    try:
        return uuid.UUID(text)
    except ValueError:
        return None
