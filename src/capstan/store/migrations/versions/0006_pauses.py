"""pauses: keys, projects, teams and departments stopped from calling models

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 00:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import capstan.store.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pauses",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("scope_kind", sa.String(length=16), nullable=False),
        sa.Column("scope_id", sa.Uuid(), nullable=False),
        sa.Column("scope_label", sa.String(length=300), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("paused_by", sa.String(length=200), nullable=False),
        sa.Column("resumed_at", capstan.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("resumed_by", sa.String(length=200), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", capstan.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "scope_kind IN ('key', 'project', 'team', 'department')",
            name=op.f("ck_pauses_scope_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_pauses_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pauses")),
    )
    with op.batch_alter_table("pauses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pauses_org_id"), ["org_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("pauses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pauses_org_id"))
    op.drop_table("pauses")
