"""Organization → departments → teams → projects; users; API keys; the config version.

Teams and projects carry the ids of every ancestor, so a scope check is a comparison of
columns, never a walk up the tree.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    Uuid,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from capstan.store.schema.base import Base, CreatedMixin, IdMixin
from capstan.store.types import UTCDateTime

NAME_LENGTH = 100


class Organization(IdMixin, CreatedMixin, Base):
    __tablename__ = "organizations"

    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)


class Department(IdMixin, CreatedMixin, Base):
    __tablename__ = "departments"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))


class Team(IdMixin, CreatedMixin, Base):
    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), index=True)
    department_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("departments.id"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))


class Project(IdMixin, CreatedMixin, Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), index=True)
    department_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("departments.id"), index=True)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    # Request payloads are recorded only for projects that opt in (off by default).
    log_payloads: Mapped[bool] = mapped_column(Boolean, default=False)
    # Moving a prompt's `production` label needs the `approver` role (segregation of duties).
    prompt_approval: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class User(IdMixin, CreatedMixin, Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("org_id", "email"),)

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    department_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("departments.id"), index=True
    )
    team_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("teams.id"), index=True)


class ApiKey(IdMixin, CreatedMixin, Base):
    """A key is stored as its SHA-256 only; `prefix` is the first characters, for display."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("(user_id IS NULL) <> (service IS NULL)", name="owner_is_user_or_service"),
        CheckConstraint(
            "role IN ('admin', 'approver', 'developer', 'analyst', 'service')", name="known_role"
        ),
        CheckConstraint(
            "scope IN ('organization', 'department', 'team', 'project')", name="known_scope"
        ),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), index=True)
    service: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    scope: Mapped[str] = mapped_column(String(16))
    department_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("departments.id"))
    team_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("teams.id"))
    project_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("projects.id"))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rotated_from_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_by: Mapped[str] = mapped_column(String(200))


class ConfigState(Base):
    """One row whose `version` every identity or routing change bumps.

    Replicas poll it (and listen on Redis when configured) to drop cached keys and config:
    this is how a revoked key stops working everywhere within a second.
    """

    __tablename__ = "config_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
