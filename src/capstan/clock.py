"""Time is UTC, always timezone-aware, at microsecond precision (what both databases keep)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """`value` as an aware UTC datetime; a naive value is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def isoformat(value: datetime) -> str:
    """The canonical text form used in hashes and exports: `2026-11-25T06:19:09.123456Z`."""
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
