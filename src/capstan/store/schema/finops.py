"""FinOps: negotiated prices, budgets and the alerts they raised, pauses and rate limits.

Money is integer micro-dollars (1 USD = 1,000,000); prices are integer micro-dollars per million
tokens, so a list price of $1.25 / M is 1,250,000 and every price with up to six decimals is
exact. Catalog prices ship with Capstan (`gateway/catalog/models.yaml`); `prices` holds only
what an organization entered: overrides for a model or a deployment, each effective from a
moment, so a price change never rewrites the cost of earlier calls.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
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

NAME = 100
TARGET = 200


class PriceOverride(IdMixin, CreatedMixin, Base):
    __tablename__ = "prices"
    __table_args__ = (
        UniqueConstraint("org_id", "target_kind", "target", "effective_from"),
        CheckConstraint("target_kind IN ('model', 'deployment')", name="target_kind"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), index=True)
    target_kind: Mapped[str] = mapped_column(String(16))
    # A model id (as the catalog or the vendor spells it) or a deployment name.
    target: Mapped[str] = mapped_column(String(TARGET))
    effective_from: Mapped[datetime] = mapped_column(UTCDateTime)
    # Micro-dollars per million tokens; None where the model has no such price.
    input: Mapped[int] = mapped_column(BigInteger)
    output: Mapped[int] = mapped_column(BigInteger)
    cached_input: Mapped[int | None] = mapped_column(BigInteger)
    cache_write: Mapped[int | None] = mapped_column(BigInteger)
    reasoning: Mapped[int | None] = mapped_column(BigInteger)
    # Micro-dollars per image and per second of audio.
    per_image: Mapped[int | None] = mapped_column(BigInteger)
    per_audio_second: Mapped[int | None] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(String(500))
    created_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)


class Budget(IdMixin, CreatedMixin, Base):
    __tablename__ = "budgets"
    __table_args__ = (
        UniqueConstraint("org_id", "name"),
        CheckConstraint(
            "scope_kind IN ('org', 'department', 'team', 'project', 'key', 'user', 'tag')",
            name="scope_kind",
        ),
        CheckConstraint("period IN ('daily', 'weekly', 'monthly', 'total')", name="period"),
        CheckConstraint("action IN ('block', 'alert-only', 'downgrade')", name="action"),
        CheckConstraint("limit_micros > 0", name="limit_positive"),
        CheckConstraint(
            "pause_at_percent IS NULL OR (pause_at_percent >= 1 AND pause_at_percent <= 1000)",
            name="pause_at_range",
        ),
        CheckConstraint(
            "pause_at_percent IS NULL OR scope_kind IN ('key', 'project', 'team', 'department')",
            name="pause_at_scope",
        ),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(NAME))
    scope_kind: Mapped[str] = mapped_column(String(16))
    # The department, team, project, key or user id; None for `org` and `tag`.
    scope_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    tag_key: Mapped[str | None] = mapped_column(String(64))
    tag_value: Mapped[str | None] = mapped_column(String(256))
    period: Mapped[str] = mapped_column(String(16))
    limit_micros: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(16))
    downgrade_to: Mapped[str | None] = mapped_column(String(NAME))
    # Percentages of the limit that raise an alert once per period, e.g. [50, 80, 100].
    thresholds: Mapped[list[int]] = mapped_column(JSON, default=list)
    # The percentage of the limit at which the budget pauses its own scope (once per period),
    # always one of `thresholds`; None: it never pauses anything.
    pause_at_percent: Mapped[int | None] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    created_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)


class BudgetAlert(IdMixin, CreatedMixin, Base):
    """A threshold a budget crossed in one period: raised once, whatever the replica."""

    __tablename__ = "budget_alerts"
    __table_args__ = (UniqueConstraint("budget_id", "period_start", "threshold"),)

    budget_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("budgets.id", ondelete="CASCADE"), index=True
    )
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    threshold: Mapped[int] = mapped_column(Integer)
    spent_micros: Mapped[int] = mapped_column(BigInteger)
    limit_micros: Mapped[int] = mapped_column(BigInteger)
    # Whether the webhook (when one is configured) took it; alerts are recorded either way.
    delivered: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Pause(IdMixin, CreatedMixin, Base):
    """A key, project, team or department stopped from calling models, by hand, until resumed.
    Rows are kept after a resume (`resumed_at`), so who paused what, why and for how long stays
    on record next to the audit chain."""

    __tablename__ = "pauses"
    __table_args__ = (
        CheckConstraint(
            "scope_kind IN ('key', 'project', 'team', 'department')", name="scope_kind"
        ),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), index=True)
    scope_kind: Mapped[str] = mapped_column(String(16))
    scope_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    scope_label: Mapped[str] = mapped_column(String(300))
    reason: Mapped[str] = mapped_column(String(500))
    paused_by: Mapped[str] = mapped_column(String(200))
    resumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resumed_by: Mapped[str | None] = mapped_column(String(200))


class RateLimit(IdMixin, CreatedMixin, Base):
    """Requests, tokens and money allowed per minute or per day to one key, project, team,
    department or model (optionally only for calls to one model), counted in fixed windows on
    the same counter stores as budgets."""

    __tablename__ = "rate_limits"
    __table_args__ = (
        UniqueConstraint("org_id", "name"),
        CheckConstraint(
            "scope_kind IN ('key', 'project', 'team', 'department', 'model')", name="scope_kind"
        ),
        CheckConstraint("period IN ('minute', 'day')", name="period"),
        CheckConstraint(
            "requests IS NOT NULL OR tokens IS NOT NULL OR usd_micros IS NOT NULL",
            name="some_limit",
        ),
        CheckConstraint("scope_kind <> 'model' OR model IS NOT NULL", name="model_scope"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(NAME))
    scope_kind: Mapped[str] = mapped_column(String(16))
    # The key, project, team or department id; None for `model`.
    scope_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    scope_label: Mapped[str] = mapped_column(String(300))
    # The model asked for (an alias or a model name): the scope of a `model` limit, and a
    # filter on any other (the limit then counts only that scope's calls to the model).
    model: Mapped[str | None] = mapped_column(String(TARGET))
    period: Mapped[str] = mapped_column(String(16))
    requests: Mapped[int | None] = mapped_column(BigInteger)
    tokens: Mapped[int | None] = mapped_column(BigInteger)
    usd_micros: Mapped[int | None] = mapped_column(BigInteger)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    created_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)
