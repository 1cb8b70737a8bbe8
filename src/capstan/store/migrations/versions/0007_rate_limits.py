"""rate limits; prompt fingerprints on request events

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 02:10:00

On PostgreSQL, a column added to the partitioned `request_events` reaches every partition.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import capstan.store.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limits",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("scope_kind", sa.String(length=16), nullable=False),
        sa.Column("scope_id", sa.Uuid(), nullable=True),
        sa.Column("scope_label", sa.String(length=300), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=True),
        sa.Column("tokens", sa.BigInteger(), nullable=True),
        sa.Column("usd_micros", sa.BigInteger(), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default="1", nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", capstan.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "scope_kind IN ('key', 'project', 'team', 'department', 'model')",
            name=op.f("ck_rate_limits_scope_kind"),
        ),
        sa.CheckConstraint("period IN ('minute', 'day')", name=op.f("ck_rate_limits_period")),
        sa.CheckConstraint(
            "requests IS NOT NULL OR tokens IS NOT NULL OR usd_micros IS NOT NULL",
            name=op.f("ck_rate_limits_some_limit"),
        ),
        sa.CheckConstraint(
            "scope_kind <> 'model' OR model IS NOT NULL", name=op.f("ck_rate_limits_model_scope")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_rate_limits_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rate_limits")),
        sa.UniqueConstraint("org_id", "name", name=op.f("uq_rate_limits_org_id")),
    )
    with op.batch_alter_table("rate_limits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rate_limits_org_id"), ["org_id"], unique=False)
    with op.batch_alter_table("request_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prompt_fingerprint", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("request_events", schema=None) as batch_op:
        batch_op.drop_column("prompt_fingerprint")
    with op.batch_alter_table("rate_limits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rate_limits_org_id"))
    op.drop_table("rate_limits")
