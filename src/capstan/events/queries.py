"""Reading request events back: filtered, scoped to the caller, newest first, page by page.

Pages are keyset-paginated on `(created_at, id)`, not on the id alone. Both would be
time-ordered, but `created_at` is what "newest first", `--since` and `--until` mean, what the
`(org_id, created_at)` and `(project_id, created_at)` indexes are sorted by and, on PostgreSQL,
what the table is partitioned on: a cursor that bounds `created_at` lets the planner walk one
index backwards and skip whole months. The id only breaks ties between events of the same
microsecond, and a gateway replica's clock may stamp ids and times in slightly different orders,
which an id-only cursor would turn into skipped or repeated rows.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_, select
from sqlalchemy.orm import Session

from capstan.clock import as_utc
from capstan.errors import InvalidInput
from capstan.identity.scope import ScopePath, visible_to
from capstan.store.schema import RequestEvent

TAG_KEY_MAX = 100
TAG_VALUE_MAX = 500
_CURSOR_SEPARATOR = "|"


class Outcome(StrEnum):
    OK = "ok"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class EventFilters:
    """What a listing asks for; every field left None (or empty) matches everything."""

    model: str | None = None
    deployment: str | None = None
    provider: str | None = None
    project_id: uuid.UUID | None = None
    team_id: uuid.UUID | None = None
    department_id: uuid.UUID | None = None
    key_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    status: int | None = None
    outcome: Outcome | None = None
    error_type: str | None = None
    # `since` is inclusive and `until` exclusive, so consecutive windows never share an event.
    since: datetime | None = None
    until: datetime | None = None
    stream: bool | None = None
    tags: tuple[tuple[str, str], ...] = ()
    prompt_name: str | None = None
    prompt_version: int | None = None
    experiment_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class EventCursor:
    """Where the previous page stopped: its last event's time and id, sent back opaque so
    clients do not build cursors of their own and the encoding may change."""

    created_at: datetime
    id: uuid.UUID

    @classmethod
    def after(cls, event: RequestEvent) -> EventCursor:
        return cls(as_utc(event.created_at), event.id)

    def encode(self) -> str:
        text = f"{as_utc(self.created_at).isoformat()}{_CURSOR_SEPARATOR}{self.id.hex}"
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> EventCursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            when, _, hex_id = raw.partition(_CURSOR_SEPARATOR)
            return cls(as_utc(datetime.fromisoformat(when)), uuid.UUID(hex=hex_id))
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise InvalidInput(
                "cursor: not a cursor this server returned", field="query.cursor"
            ) from exc


def parse_tag(text: str) -> tuple[str, str]:
    """`key=value` as a pair. A key may not hold `"`, `\\` or control characters: on SQLite it
    becomes part of a JSON path, where those would end the quoted label early."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise InvalidInput(f"tag: {text!r} is not KEY=VALUE", field="query.tag")
    if len(key) > TAG_KEY_MAX or len(value) > TAG_VALUE_MAX:
        raise InvalidInput(f"tag: {text[:40]!r}… is too long", field="query.tag")
    if any(c in '"\\' or not c.isprintable() for c in key):
        raise InvalidInput(
            f"tag: the key {key!r} has a character tags cannot hold", field="query.tag"
        )
    return key, value


def _scope_columns() -> dict[str, Any]:
    return {
        "org_id": RequestEvent.org_id,
        "department_id": RequestEvent.department_id,
        "team_id": RequestEvent.team_id,
        "project_id": RequestEvent.project_id,
    }


def _conditions(filters: EventFilters) -> list[ColumnElement[bool]]:
    e = RequestEvent
    equal: list[tuple[Any, Any]] = [
        (e.model, filters.model),
        (e.deployment, filters.deployment),
        (e.provider, filters.provider),
        (e.project_id, filters.project_id),
        (e.team_id, filters.team_id),
        (e.department_id, filters.department_id),
        (e.key_id, filters.key_id),
        (e.user_id, filters.user_id),
        (e.status, filters.status),
        (e.error_type, filters.error_type),
        (e.stream, filters.stream),
        (e.prompt_name, filters.prompt_name),
        (e.prompt_version, filters.prompt_version),
        (e.experiment_id, filters.experiment_id),
    ]
    conditions: list[ColumnElement[bool]] = [
        column == value for column, value in equal if value is not None
    ]
    if filters.outcome is Outcome.OK:
        conditions.append(e.error_type.is_(None))
    elif filters.outcome is Outcome.ERROR:
        conditions.append(e.error_type.is_not(None))
    if filters.since is not None:
        conditions.append(e.created_at >= as_utc(filters.since))
    if filters.until is not None:
        conditions.append(e.created_at < as_utc(filters.until))
    # `tags[key].as_string()` is JSON_EXTRACT on SQLite and `->>` on PostgreSQL.
    conditions.extend(e.tags[key].as_string() == value for key, value in filters.tags)
    return conditions


def _before(cursor: EventCursor) -> ColumnElement[bool]:
    """Strictly older than the cursor in `(created_at, id)` order. Spelled out rather than as a
    row-value comparison so both databases read it the same way; the leading `<=` alone is what
    an index on `created_at` (and partition pruning) can use."""
    e = RequestEvent
    return and_(
        e.created_at <= cursor.created_at,
        or_(
            e.created_at < cursor.created_at,
            and_(e.created_at == cursor.created_at, e.id < cursor.id),
        ),
    )


def list_statement(
    scope: ScopePath, filters: EventFilters, limit: int, cursor: EventCursor | None
) -> Select[RequestEvent]:
    statement = select(RequestEvent).where(
        visible_to(scope, _scope_columns()), *_conditions(filters)
    )
    if cursor is not None:
        statement = statement.where(_before(cursor))
    order = (RequestEvent.created_at.desc(), RequestEvent.id.desc())
    return statement.order_by(*order).limit(limit)


def list_events(
    session: Session,
    scope: ScopePath,
    filters: EventFilters,
    limit: int,
    cursor: EventCursor | None = None,
) -> list[RequestEvent]:
    """At most `limit` events `scope` may see that match `filters`, newest first, older than
    `cursor` when one is given."""
    return list(session.scalars(list_statement(scope, filters, limit, cursor)))


def get_event(session: Session, scope: ScopePath, event_id: uuid.UUID) -> RequestEvent | None:
    """One event, or None when there is none or `scope` may not see it: callers answer both
    the same way, so a key cannot probe for events outside its scope."""
    statement = select(RequestEvent).where(
        RequestEvent.id == event_id, visible_to(scope, _scope_columns())
    )
    return session.scalars(statement.order_by(RequestEvent.created_at.desc()).limit(1)).first()
