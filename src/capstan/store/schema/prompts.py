"""Prompts: immutable versions, labels that point at them, the labels' history, experiments
between versions, and the feedback that scores what a call (or a prediction) produced.

A version is never changed once written: the gateway may cache it forever, and an audit entry
that names `support-reply v7` names the same text next year. What moves is a label, and each
move is kept (`prompt_label_moves`), which is what `rollback` walks back through.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from capstan.clock import utcnow
from capstan.store.schema.base import Base, CreatedMixin, IdMixin
from capstan.store.types import UTCDateTime

NAME = 100
LABEL = 64
ACTOR = 200


class Prompt(IdMixin, CreatedMixin, Base):
    __tablename__ = "prompts"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(NAME))
    # The owning project, whose settings apply (moving `production` may need an approver).
    project_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("projects.id"), index=True)
    description: Mapped[str | None] = mapped_column(String(500))
    created_by: Mapped[str] = mapped_column(String(ACTOR))


class PromptVersion(IdMixin, CreatedMixin, Base):
    __tablename__ = "prompt_versions"
    __table_args__ = (
        UniqueConstraint("prompt_id", "version"),
        CheckConstraint("(messages IS NULL) <> (text IS NULL)", name="one_template"),
        CheckConstraint("version >= 1", name="version_positive"),
    )

    prompt_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prompts.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    # A chat template ([{role, content}], content a Jinja2 template) or a text template.
    # `none_as_null`: a text template stores SQL NULL here, not JSON `null` (the check
    # constraint tells the two kinds apart by NULL).
    messages: Mapped[list[dict[str, str]] | None] = mapped_column(JSON(none_as_null=True))
    text: Mapped[str | None] = mapped_column(Text)
    # The alias or deployment the prompt is written for, and its model parameters.
    model: Mapped[str | None] = mapped_column(String(200))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The variables schema, canonical (`prompts.variables.schema_document`).
    variables: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    message: Mapped[str | None] = mapped_column(String(500))
    author: Mapped[str] = mapped_column(String(ACTOR))
    # SHA-256 of the canonical content: a push of unchanged content makes no new version.
    content_hash: Mapped[str] = mapped_column(String(64))


class PromptLabel(IdMixin, Base):
    __tablename__ = "prompt_labels"
    __table_args__ = (UniqueConstraint("prompt_id", "name"),)

    prompt_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prompts.id"), index=True)
    name: Mapped[str] = mapped_column(String(LABEL))
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(ACTOR))


class PromptLabelMove(IdMixin, CreatedMixin, Base):
    """One move of a label. `rollback` undoes the latest move not undone yet, so rolling back
    twice goes two moves back, like an undo stack."""

    __tablename__ = "prompt_label_moves"
    __table_args__ = (
        Index("ix_prompt_label_moves_label", "prompt_id", "label", "created_at"),
        CheckConstraint("kind IN ('move', 'rollback')", name="kind"),
    )

    prompt_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prompts.id"))
    label: Mapped[str] = mapped_column(String(LABEL))
    from_version: Mapped[int | None] = mapped_column(Integer)
    to_version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    undone: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    moved_by: Mapped[str] = mapped_column(String(ACTOR))


class PromptExperiment(IdMixin, CreatedMixin, Base):
    """Variants (versions with weights) served in place of a label's version, each caller
    always getting the same one (a hash of its user, key or a header)."""

    __tablename__ = "prompt_experiments"
    __table_args__ = (
        UniqueConstraint("org_id", "name"),
        CheckConstraint("status IN ('running', 'stopped')", name="status"),
        # At most one running experiment per prompt label.
        Index(
            "uq_prompt_experiments_running",
            "prompt_id",
            "label",
            unique=True,
            sqlite_where=text("status = 'running'"),
            postgresql_where=text("status = 'running'"),
        ),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), index=True)
    prompt_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("prompts.id"))
    name: Mapped[str] = mapped_column(String(NAME))
    label: Mapped[str] = mapped_column(String(LABEL))
    # [{"version": 3, "weight": 50}, ...]; the first is the control.
    variants: Mapped[list[dict[str, int]]] = mapped_column(JSON)
    sticky_by: Mapped[str] = mapped_column(String(80))
    min_samples: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    started_by: Mapped[str] = mapped_column(String(ACTOR))
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stopped_by: Mapped[str | None] = mapped_column(String(ACTOR))
    # The version promoted when the experiment stopped (its label moved there), if any.
    promoted_version: Mapped[int | None] = mapped_column(Integer)


class Feedback(IdMixin, CreatedMixin, Base):
    """A score or a label for what a request (or a prediction) produced, linked by its id;
    late feedback is welcome, and the same feedback id sent twice is kept once."""

    __tablename__ = "feedback"
    __table_args__ = (
        Index("ix_feedback_target", "org_id", "target_id"),
        CheckConstraint("score IS NOT NULL OR label IS NOT NULL", name="some_value"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"))
    # The `x-capstan-request-id` of an LLM call, or a prediction id.
    target_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    score: Mapped[float | None] = mapped_column(Float)
    label: Mapped[str | None] = mapped_column(String(200))
    comment: Mapped[str | None] = mapped_column(String(1000))
    created_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)
