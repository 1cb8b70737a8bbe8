"""finops: price overrides, budgets, budget alerts; cost columns on request events

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 00:10:00

On PostgreSQL, columns added to the partitioned `request_events` reach every partition.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import capstan.store.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_EVENT_COLUMNS = (
    ("cache_write_tokens", sa.Integer()),
    ("reasoning_tokens", sa.Integer()),
    ("cost_micros", sa.BigInteger()),
    ("cost_input_micros", sa.BigInteger()),
    ("cost_cache_read_micros", sa.BigInteger()),
    ("cost_cache_write_micros", sa.BigInteger()),
    ("cost_output_micros", sa.BigInteger()),
    ("cost_reasoning_micros", sa.BigInteger()),
)


def upgrade() -> None:
    op.create_table(
        "prices",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("target_kind", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("effective_from", capstan.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("input", sa.BigInteger(), nullable=False),
        sa.Column("output", sa.BigInteger(), nullable=False),
        sa.Column("cached_input", sa.BigInteger(), nullable=True),
        sa.Column("cache_write", sa.BigInteger(), nullable=True),
        sa.Column("reasoning", sa.BigInteger(), nullable=True),
        sa.Column("per_image", sa.BigInteger(), nullable=True),
        sa.Column("per_audio_second", sa.BigInteger(), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", capstan.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "target_kind IN ('model', 'deployment')", name=op.f("ck_prices_target_kind")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_prices_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prices")),
        sa.UniqueConstraint(
            "org_id", "target_kind", "target", "effective_from", name=op.f("uq_prices_org_id")
        ),
    )
    with op.batch_alter_table("prices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_prices_org_id"), ["org_id"], unique=False)

    op.create_table(
        "budgets",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("scope_kind", sa.String(length=16), nullable=False),
        sa.Column("scope_id", sa.Uuid(), nullable=True),
        sa.Column("tag_key", sa.String(length=64), nullable=True),
        sa.Column("tag_value", sa.String(length=256), nullable=True),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("limit_micros", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("downgrade_to", sa.String(length=100), nullable=True),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default="1", nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", capstan.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "scope_kind IN ('org', 'department', 'team', 'project', 'key', 'user', 'tag')",
            name=op.f("ck_budgets_scope_kind"),
        ),
        sa.CheckConstraint(
            "period IN ('daily', 'weekly', 'monthly', 'total')", name=op.f("ck_budgets_period")
        ),
        sa.CheckConstraint(
            "action IN ('block', 'alert-only', 'downgrade')", name=op.f("ck_budgets_action")
        ),
        sa.CheckConstraint("limit_micros > 0", name=op.f("ck_budgets_limit_positive")),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_budgets_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budgets")),
        sa.UniqueConstraint("org_id", "name", name=op.f("uq_budgets_org_id")),
    )
    with op.batch_alter_table("budgets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_budgets_org_id"), ["org_id"], unique=False)

    op.create_table(
        "budget_alerts",
        sa.Column("budget_id", sa.Uuid(), nullable=False),
        sa.Column("period_start", capstan.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("spent_micros", sa.BigInteger(), nullable=False),
        sa.Column("limit_micros", sa.BigInteger(), nullable=False),
        sa.Column("delivered", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", capstan.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["budget_id"],
            ["budgets.id"],
            name=op.f("fk_budget_alerts_budget_id_budgets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budget_alerts")),
        sa.UniqueConstraint(
            "budget_id", "period_start", "threshold", name=op.f("uq_budget_alerts_budget_id")
        ),
    )
    with op.batch_alter_table("budget_alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_budget_alerts_budget_id"), ["budget_id"], unique=False)

    with op.batch_alter_table("request_events", schema=None) as batch_op:
        for name, kind in _EVENT_COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=True))
        batch_op.add_column(
            sa.Column("cost_estimated", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("request_events", schema=None) as batch_op:
        batch_op.drop_column("cost_estimated")
        for name, _ in reversed(_EVENT_COLUMNS):
            batch_op.drop_column(name)
    with op.batch_alter_table("budget_alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_budget_alerts_budget_id"))
    op.drop_table("budget_alerts")
    with op.batch_alter_table("budgets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_budgets_org_id"))
    op.drop_table("budgets")
    with op.batch_alter_table("prices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_prices_org_id"))
    op.drop_table("prices")
