"""Pausing and resuming a key, project, team or department: its model calls are refused, with
an error that says who paused it, why and since when, until someone resumes it.

A pause is a configuration change (audited, config-version bump), so every gateway replica
refuses within a second; the gateway checks pauses in memory, from its routing snapshot. An
admin pauses by hand; a budget with `pause_at` pauses its own scope through the same `start`.
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
from capstan.finops.budgets import PAUSABLE, Scope, resolve_scope
from capstan.identity.changes import ChangeRecorder, state_of
from capstan.identity.directory import Directory
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.identity.scope import ScopePath
from capstan.store.engine import Store
from capstan.store.schema import Pause

__all__ = [
    "MAX_REASON",
    "PAUSABLE",
    "PauseNotice",
    "PausedScopes",
    "Pauses",
    "load_paused",
    "paused_for",
]
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
            _require_pausable(resolved)
            principal.require_within(resolved.path)
            row = self.start(session, org_id, resolved, reason, principal)
            if row is None:
                raise Conflict(f"{resolved.label} is already paused", field="scope")
            return row

    def start(
        self,
        session: Session,
        org_id: uuid.UUID,
        scope: Scope,
        reason: str,
        actor: Principal | str,
    ) -> Pause | None:
        """Pause `scope` in the caller's transaction, with its audit entry and a config-version
        bump; None when it is paused already. `actor` is a person's principal, or a name such
        as `budget:NAME` when Capstan pauses on its own (a budget's threshold), so the pause
        row, the audit entry and every refused caller say what stopped the scope."""
        _require_pausable(scope)
        assert scope.scope_id is not None  # a pausable scope names one thing
        if _active(session, org_id, scope.kind, scope.scope_id) is not None:
            return None
        row = Pause(
            org_id=org_id,
            scope_kind=scope.kind,
            scope_id=scope.scope_id,
            scope_label=scope.label,
            reason=reason[:MAX_REASON],
            paused_by=actor if isinstance(actor, str) else actor.actor,
        )
        session.add(row)
        self.changes.record(session, actor, "pause.start", row, before=None)
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


def _require_pausable(scope: Scope) -> None:
    if scope.kind not in PAUSABLE or scope.scope_id is None:
        raise InvalidInput(
            "a pause is for key:ID, project:NAME, team:NAME or department:NAME", field="scope"
        )


def _active(session: Session, org_id: uuid.UUID, kind: str, scope_id: uuid.UUID) -> Pause | None:
    return session.scalars(
        select(Pause).where(
            Pause.org_id == org_id,
            Pause.scope_kind == kind,
            Pause.scope_id == scope_id,
            Pause.resumed_at.is_(None),
        )
    ).first()
