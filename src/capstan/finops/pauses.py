"""Pausing and resuming a key, project, team or department: its model calls are refused, with
an error that says who paused it, why and since when, until someone resumes it.

A pause is a configuration change (audited, config-version bump), so every gateway replica
refuses within a second; the gateway checks pauses in memory, from its routing snapshot.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from capstan.clock import utcnow
from capstan.errors import Conflict, InvalidInput, NotFound
from capstan.finops.budgets import resolve_scope
from capstan.identity.changes import ChangeRecorder, state_of
from capstan.identity.directory import Directory
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.identity.scope import ScopePath
from capstan.store.engine import Store
from capstan.store.schema import Pause

PAUSABLE = ("key", "project", "team", "department")
MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class PauseNotice:
    """What a refused call is told."""

    scope_label: str
    reason: str
    paused_by: str
    since: datetime

    def message(self) -> str:
        return (
            f"{self.scope_label} is paused (by {self.paused_by} since "
            f"{self.since.isoformat(timespec='seconds')}): {self.reason}"
        )


PausedScopes = Mapping[tuple[str, uuid.UUID], PauseNotice]


def paused_for(
    paused: PausedScopes, scope: ScopePath, key_id: uuid.UUID | None
) -> PauseNotice | None:
    """The pause that stops a caller, if any: its key's, then its project's, team's,
    department's."""
    for kind, target in (
        ("key", key_id),
        ("project", scope.project_id),
        ("team", scope.team_id),
        ("department", scope.department_id),
    ):
        if target is not None:
            found = paused.get((kind, target))
            if found is not None:
                return found
    return None


def load_paused(session: Session, org_id: uuid.UUID) -> dict[tuple[str, uuid.UUID], PauseNotice]:
    rows = session.scalars(
        select(Pause).where(Pause.org_id == org_id, Pause.resumed_at.is_(None))
    ).all()
    return {
        (row.scope_kind, row.scope_id): PauseNotice(
            row.scope_label, row.reason, row.paused_by, row.created_at
        )
        for row in rows
    }


class Pauses:
    def __init__(self, store: Store, directory: Directory, changes: ChangeRecorder) -> None:
        self.store = store
        self.directory = directory
        self.changes = changes

    def pause(self, principal: Principal, scope: str, reason: str) -> Pause:
        principal.require(Permission.BUDGETS_WRITE)
        reason = reason.strip()
        if not reason or len(reason) > MAX_REASON:
            raise InvalidInput(
                f"say why, in 1 to {MAX_REASON} characters (callers are told)", field="reason"
            )
        org_id = principal.scope.org_id
        with self.store.write() as session:
            resolved = resolve_scope(session, self.directory, org_id, scope)
            if resolved.kind not in PAUSABLE or resolved.scope_id is None:
                raise InvalidInput(
                    "a pause is for key:ID, project:NAME, team:NAME or department:NAME",
                    field="scope",
                )
            principal.require_within(resolved.path)
            if _active(session, org_id, resolved.kind, resolved.scope_id) is not None:
                raise Conflict(f"{resolved.label} is already paused", field="scope")
            row = Pause(
                org_id=org_id,
                scope_kind=resolved.kind,
                scope_id=resolved.scope_id,
                scope_label=resolved.label,
                reason=reason,
                paused_by=principal.actor,
            )
            session.add(row)
            self.changes.record(session, principal, "pause.start", row, before=None)
            return row

    def resume(self, principal: Principal, scope: str) -> Pause:
        principal.require(Permission.BUDGETS_WRITE)
        org_id = principal.scope.org_id
        with self.store.write() as session:
            resolved = resolve_scope(session, self.directory, org_id, scope)
            principal.require_within(resolved.path)
            row = None
            if resolved.scope_id is not None:
                row = _active(session, org_id, resolved.kind, resolved.scope_id)
            if row is None:
                raise NotFound(f"{resolved.label} is not paused", field="scope")
            before = state_of(row)
            row.resumed_at = utcnow()
            row.resumed_by = principal.actor
            self.changes.record(session, principal, "pause.end", row, before=before)
            return row

    def list(self, principal: Principal, *, include_resumed: bool = False) -> list[Pause]:
        principal.require(Permission.SPEND_READ)
        statement = select(Pause).where(Pause.org_id == principal.scope.org_id)
        if not include_resumed:
            statement = statement.where(Pause.resumed_at.is_(None))
        with self.store.read() as session:
            return list(session.scalars(statement.order_by(Pause.created_at)).all())


def _active(session: Session, org_id: uuid.UUID, kind: str, scope_id: uuid.UUID) -> Pause | None:
    return session.scalars(
        select(Pause).where(
            Pause.org_id == org_id,
            Pause.scope_kind == kind,
            Pause.scope_id == scope_id,
            Pause.resumed_at.is_(None),
        )
    ).first()
