"""What every identity change shares: audit entry and config-version bump in its transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm import Session

from capstan.governance.audit import AuditLog
from capstan.identity.config_version import ConfigVersions
from capstan.identity.principal import Principal
from capstan.store.schema import Base

# Columns never fed into audit digests: already hashes, or secret.
UNAUDITED_COLUMNS = frozenset({"key_hash", "ciphertext", "nonce"})


def state_of(row: Base) -> dict[str, Any]:
    """The row as a plain mapping, for `before`/`after` digests."""
    return {
        column.key: getattr(row, column.key)
        for column in row.__table__.columns
        if column.key not in UNAUDITED_COLUMNS
    }


class ChangeRecorder:
    def __init__(self, audit: AuditLog, versions: ConfigVersions) -> None:
        self.audit = audit
        self.versions = versions

    def record(
        self,
        session: Session,
        actor: Principal | str,
        action: str,
        row: Base,
        *,
        before: dict[str, Any] | None,
        bump: bool = True,
    ) -> None:
        """Audit a change to `row`, whose state now is `after` (none once it is deleted)."""
        session.flush()
        self.audit.append(
            session,
            actor=actor if isinstance(actor, str) else actor.actor,
            action=action,
            resource_type=row.__tablename__,
            resource_id=str(row.id),  # type: ignore[attr-defined]
            before=before,
            after=None if inspect(row).deleted else state_of(row),
        )
        if bump:
            self.versions.bump(session)

    def record_deletion(
        self, session: Session, actor: Principal | str, action: str, row: Base, *, bump: bool = True
    ) -> None:
        """Delete `row` and audit it: `before` is its last state."""
        before = state_of(row)
        session.delete(row)
        self.record(session, actor, action, row, before=before, bump=bump)
