"""Request events for the pipeline tests, and ways to look at what reached the store or disk."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from capstan.clock import utcnow
from capstan.events.spool import LOCK, SUFFIX
from capstan.ids import new_id
from capstan.store import Store
from capstan.store.schema import RequestEvent


def make_event(**overrides: Any) -> dict[str, Any]:
    """A realistic event (about 600 bytes as JSON), as the gateway would record it."""
    event: dict[str, Any] = {
        "id": new_id(),
        "created_at": utcnow(),
        "org_id": new_id(),
        "department_id": None,
        "team_id": new_id(),
        "project_id": new_id(),
        "key_id": new_id(),
        "user_id": None,
        "route": "chat.completions",
        "model": "gpt-4o-mini",
        "deployment": "openai-main",
        "provider": "openai",
        "upstream_model": "gpt-4o-mini-2024-07-18",
        "stream": True,
        "attempts": 1,
        "status": 200,
        "error_type": None,
        "error_message": None,
        "prompt_tokens": 1234,
        "completion_tokens": 567,
        "cached_tokens": 0,
        "latency_ms": 812.5,
        "ttft_ms": 120.25,
        "tags": {"team": "search", "env": "prod"},
        "payload": None,
    }
    event.update(overrides)
    return event


def stored(store: Store) -> list[RequestEvent]:
    with store.read() as session:
        return list(session.scalars(select(RequestEvent).order_by(RequestEvent.created_at)))


def stored_ids(store: Store) -> list[uuid.UUID]:
    """Every id in the table, duplicates included (a duplicate would show up twice)."""
    return [event.id for event in stored(store)]


def dead_spool(root: Path, name: str, content: bytes) -> Path:
    """A spool directory as a process that died would leave it: a lock file nobody holds and
    one segment of JSON lines."""
    directory = root / name
    directory.mkdir(parents=True)
    (directory / LOCK).touch()
    (directory / f"{1:012d}{SUFFIX}").write_bytes(content)
    return directory


def as_of(moment: datetime, **overrides: Any) -> dict[str, Any]:
    return make_event(created_at=moment, **overrides)
