"""Feedback: a score or a label for what an LLM call or a prediction produced, linked by the
request (or prediction) id the client got.

Sent by applications (a user's thumbs up, a reviewer's grade) or by the systems that learn the
truth later (the loan that defaulted), so late feedback is welcome and nothing checks that the
request is still in the event table. A feedback id sent again is kept once: clients retry.
Feedback is data, not configuration: it is not audited one by one.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from capstan.clock import utcnow
from capstan.errors import InvalidInput
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.ids import new_id
from capstan.store.engine import Store
from capstan.store.schema import Feedback

MAX_BATCH = 1000
MAX_LABEL = 200
MAX_COMMENT = 1000


@dataclass(frozen=True, slots=True)
class FeedbackItem:
    target_id: uuid.UUID
    score: float | None = None
    label: str | None = None
    comment: str | None = None
    id: uuid.UUID | None = None  # the client's, to make a retry harmless


@dataclass(frozen=True, slots=True)
class Recorded:
    id: uuid.UUID
    target_id: uuid.UUID
    created: bool  # False: this id was recorded before (a retry)


def check(item: FeedbackItem, index: int | None = None) -> None:
    where = "" if index is None else f"[{index}]"
    if item.score is None and item.label is None:
        raise InvalidInput("feedback carries a score, a label or both", field=f"items{where}")
    if item.score is not None and not math.isfinite(item.score):
        raise InvalidInput("a score is a finite number", field=f"items{where}.score")
    if item.label is not None and not 0 < len(item.label) <= MAX_LABEL:
        raise InvalidInput(f"a label is 1 to {MAX_LABEL} characters", field=f"items{where}.label")
    if item.comment is not None and len(item.comment) > MAX_COMMENT:
        raise InvalidInput(
            f"a comment is at most {MAX_COMMENT} characters", field=f"items{where}.comment"
        )


class FeedbackLog:
    def __init__(self, store: Store) -> None:
        self.store = store

    def record(self, principal: Principal, items: Sequence[FeedbackItem]) -> list[Recorded]:
        """Insert what is new, in one transaction; ids seen before are reported, not
        inserted again."""
        principal.require(Permission.FEEDBACK_WRITE)
        if not 0 < len(items) <= MAX_BATCH:
            raise InvalidInput(f"send 1 to {MAX_BATCH} feedback items at once", field="items")
        for index, item in enumerate(items):
            check(item, index if len(items) > 1 else None)
        org_id = principal.scope.org_id
        ids = [item.id or new_id() for item in items]
        if len(set(ids)) != len(ids):
            raise InvalidInput("each feedback item in a batch has its own id", field="items")
        now = utcnow()
        rows = [
            {
                "id": feedback_id,
                "org_id": org_id,
                "target_id": item.target_id,
                "score": item.score,
                "label": item.label,
                "comment": item.comment,
                "created_by": principal.key_id,
                "created_at": now,
            }
            for feedback_id, item in zip(ids, items, strict=True)
        ]
        with self.store.write() as session:
            dialect = session.get_bind().dialect.name
            insert = pg_insert if dialect == "postgresql" else sqlite_insert
            existing = set(
                session.scalars(
                    select(Feedback.id).where(Feedback.org_id == org_id, Feedback.id.in_(ids))
                ).all()
            )
            fresh = [row for row in rows if row["id"] not in existing]
            if fresh:
                session.execute(insert(Feedback).on_conflict_do_nothing(), fresh)
        return [
            Recorded(feedback_id, item.target_id, created=feedback_id not in existing)
            for feedback_id, item in zip(ids, items, strict=True)
        ]
