"""gateway reliability: deployment retries and stream idle timeout, content-policy fallback

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 20:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("max_retries", sa.Integer(), server_default="2", nullable=False)
        )
        batch_op.add_column(sa.Column("stream_idle_timeout_s", sa.Float(), nullable=True))
    with op.batch_alter_table("aliases", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "fallback_on_content_policy",
                sa.Boolean(),
                server_default=sa.false(),
                nullable=False,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("aliases", schema=None) as batch_op:
        batch_op.drop_column("fallback_on_content_policy")
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_column("stream_idle_timeout_s")
        batch_op.drop_column("max_retries")
