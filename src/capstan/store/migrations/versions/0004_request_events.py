"""request events: one row per data-plane request, partitioned by month on PostgreSQL

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 09:00:00

On PostgreSQL the table is range-partitioned on `created_at`. The partitions live in their own
schema so the default schema shows exactly the tables the models describe (schema comparison and
table listings stay clean), and a DEFAULT partition catches any row whose month has no partition
yet, so an insert never fails for lack of one. This revision creates the current month and the
next two; `capstan.events.store.ensure_partitions` keeps creating them ahead of time.

The partition helpers are deliberately copied here rather than imported: a migration must keep
doing what it did on the day it shipped, whatever the application code becomes.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.sql.schema import SchemaItem

import capstan.store.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

PARTITION_SCHEMA = "request_event_partitions"
MONTHS = 3  # this month and the next two


def _columns() -> list[SchemaItem]:
    return [
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", capstan.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("department_id", sa.Uuid(), nullable=True),
        sa.Column("team_id", sa.Uuid(), nullable=True),
        sa.Column("project_id", sa.Uuid(), nullable=True),
        sa.Column("key_id", sa.Uuid(), nullable=True),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("route", sa.String(length=40), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("deployment", sa.String(length=100), nullable=True),
        sa.Column("provider", sa.String(length=100), nullable=True),
        sa.Column("upstream_model", sa.String(length=200), nullable=True),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error_type", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.String(length=500), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("cached_tokens", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("ttft_ms", sa.Float(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", "created_at", name=op.f("pk_request_events")),
    ]


def _month_start(year: int, month: int) -> datetime:
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    return datetime(year, month, 1, tzinfo=UTC)


def _create_month_partitions() -> None:
    today = datetime.now(UTC)
    for offset in range(MONTHS):
        start = _month_start(today.year, today.month + offset)
        end = _month_start(start.year, start.month + 1)
        name = f"request_events_{start:%Y_%m}"
        op.execute(
            f'CREATE TABLE IF NOT EXISTS "{PARTITION_SCHEMA}"."{name}" '
            f"PARTITION OF request_events "
            f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
        )


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute(f'CREATE SCHEMA IF NOT EXISTS "{PARTITION_SCHEMA}"')
        op.create_table("request_events", *_columns(), postgresql_partition_by="RANGE (created_at)")
    else:
        op.create_table("request_events", *_columns())
    with op.batch_alter_table("request_events", schema=None) as batch_op:
        batch_op.create_index("ix_request_events_org_time", ["org_id", "created_at"], unique=False)
        batch_op.create_index(
            "ix_request_events_project_time", ["project_id", "created_at"], unique=False
        )
        batch_op.create_index("ix_request_events_key_time", ["key_id", "created_at"], unique=False)
    if postgresql:
        op.execute(
            f'CREATE TABLE IF NOT EXISTS "{PARTITION_SCHEMA}"."request_events_default" '
            "PARTITION OF request_events DEFAULT"
        )
        _create_month_partitions()


def downgrade() -> None:
    with op.batch_alter_table("request_events", schema=None) as batch_op:
        batch_op.drop_index("ix_request_events_key_time")
        batch_op.drop_index("ix_request_events_project_time")
        batch_op.drop_index("ix_request_events_org_time")
    # On PostgreSQL this drops every attached partition with the parent.
    op.drop_table("request_events")
    if op.get_bind().dialect.name == "postgresql":
        # CASCADE: partitions detached by retention would otherwise keep the schema alive.
        op.execute(f'DROP SCHEMA IF EXISTS "{PARTITION_SCHEMA}" CASCADE')
