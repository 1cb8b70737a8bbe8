"""API keys: create (shown once), list, revoke, rotate. Every change is audited and bumps the
config version, which is what makes a revocation reach every replica within a second."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from capstan.clock import as_utc, utcnow
from capstan.errors import InvalidInput, NotFound
from capstan.identity.changes import ChangeRecorder, state_of
from capstan.identity.directory import Directory
from capstan.identity.key_material import display_prefix, generate_key, hash_key
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission, Role
from capstan.identity.scope import ScopePath, visible_to
from capstan.store.engine import Store
from capstan.store.schema import ApiKey


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key row plus the plaintext, which exists only in this object and the response."""

    row: ApiKey
    plaintext: str


@dataclass(frozen=True, slots=True)
class KeyRequest:
    role: Role
    name: str | None = None
    department: str | None = None
    team: str | None = None
    project: str | None = None
    user: str | None = None
    service: str | None = None
    expires_at: datetime | None = None


class ApiKeys:
    def __init__(self, store: Store, directory: Directory, changes: ChangeRecorder) -> None:
        self.store = store
        self.directory = directory
        self.changes = changes

    def create(self, principal: Principal, request: KeyRequest) -> IssuedKey:
        principal.require(Permission.KEYS_MANAGE)
        if sum(x is not None for x in (request.department, request.team, request.project)) > 1:
            raise InvalidInput("give at most one of department, team or project", field="scope")
        if request.user is not None and request.service is not None:
            raise InvalidInput("a key belongs to a user or a service, not both", field="user")
        expires_at = as_utc(request.expires_at) if request.expires_at else None
        if expires_at is not None and expires_at <= utcnow():
            raise InvalidInput("expires_at is in the past", field="expires_at")
        with self.store.write() as session:
            scope = self.directory.resolve_scope(
                session,
                principal.scope.org_id,
                department=request.department,
                team=request.team,
                project=request.project,
            )
            principal.require_within(scope)
            user_id = None
            if request.user is not None:
                user_id = self.directory.resolve_user(session, scope.org_id, request.user).id
            service = (
                None if user_id else (request.service or request.name or f"{request.role}-service")
            )
            issued = self._issue(
                session,
                principal,
                scope=scope,
                role=request.role,
                name=request.name or f"{request.role} key",
                user_id=user_id,
                service=service,
                expires_at=expires_at,
                rotated_from=None,
            )
        return issued

    def list(
        self, principal: Principal, after: uuid.UUID | None, limit: int, *, include_revoked: bool
    ) -> Sequence[ApiKey]:
        principal.require(Permission.KEYS_MANAGE)
        columns = {
            "org_id": ApiKey.org_id,
            "department_id": ApiKey.department_id,
            "team_id": ApiKey.team_id,
            "project_id": ApiKey.project_id,
        }
        statement = select(ApiKey).where(visible_to(principal.scope, columns))
        if not include_revoked:
            statement = statement.where(ApiKey.revoked_at.is_(None))
        if after is not None:
            statement = statement.where(ApiKey.id > after)
        with self.store.read() as session:
            return session.scalars(statement.order_by(ApiKey.id).limit(limit)).all()

    def revoke(self, principal: Principal, key_id: uuid.UUID) -> ApiKey:
        principal.require(Permission.KEYS_MANAGE)
        with self.store.write() as session:
            row = self._owned(session, principal, key_id)
            if row.revoked_at is None:
                before = state_of(row)
                row.revoked_at = utcnow()
                self.changes.record(session, principal, "key.revoke", row, before=before)
        return row

    def rotate(
        self, principal: Principal, key_id: uuid.UUID, *, grace: timedelta | None = None
    ) -> IssuedKey:
        """A new key with the same role, owner and scope; the old one is revoked at once, or
        expires after `grace` so clients can switch over without an outage."""
        principal.require(Permission.KEYS_MANAGE)
        with self.store.write() as session:
            old = self._owned(session, principal, key_id)
            if old.revoked_at is not None:
                raise InvalidInput("a revoked key cannot be rotated", field="key_id")
            before = state_of(old)
            if grace:
                deadline = utcnow() + grace
                old.expires_at = min(old.expires_at, deadline) if old.expires_at else deadline
                self.changes.record(session, principal, "key.expire", old, before=before)
            else:
                old.revoked_at = utcnow()
                self.changes.record(session, principal, "key.revoke", old, before=before)
            issued = self._issue(
                session,
                principal,
                scope=ScopePath(old.org_id, old.department_id, old.team_id, old.project_id),
                role=Role(old.role),
                name=old.name,
                user_id=old.user_id,
                service=old.service,
                expires_at=None,
                rotated_from=old.id,
            )
        return issued

    def _owned(self, session: Session, principal: Principal, key_id: uuid.UUID) -> ApiKey:
        row = session.get(ApiKey, key_id)
        if row is None or row.org_id != principal.scope.org_id:
            raise NotFound(f"no key {key_id}", field="key_id")
        principal.require_within(
            ScopePath(row.org_id, row.department_id, row.team_id, row.project_id)
        )
        return row

    def _issue(
        self,
        session: Session,
        principal: Principal,
        *,
        scope: ScopePath,
        role: Role,
        name: str,
        user_id: uuid.UUID | None,
        service: str | None,
        expires_at: datetime | None,
        rotated_from: uuid.UUID | None,
    ) -> IssuedKey:
        plaintext = generate_key()
        row = ApiKey(
            org_id=scope.org_id,
            name=name,
            prefix=display_prefix(plaintext),
            key_hash=hash_key(plaintext),
            role=role.value,
            user_id=user_id,
            service=service,
            scope=scope.level.value,
            department_id=scope.department_id,
            team_id=scope.team_id,
            project_id=scope.project_id,
            expires_at=expires_at,
            rotated_from_id=rotated_from,
            created_by=principal.actor,
        )
        session.add(row)
        self.changes.record(session, principal, "key.create", row, before=None)
        return IssuedKey(row=row, plaintext=plaintext)
