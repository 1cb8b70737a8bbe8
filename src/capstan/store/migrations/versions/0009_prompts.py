"""prompts: versions, labels and their moves, experiments; feedback; prompt columns on events

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 05:17:12

`projects.prompt_approval` is added (and dropped) in place on SQLite: rebuilding `projects` as
batch mode would drop a table that keys, prompts and budgets refer to.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import capstan.store.types

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("target_id", sa.Uuid(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column("comment", sa.String(length=1000), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", capstan.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "score IS NOT NULL OR label IS NOT NULL", name=op.f("ck_feedback_some_value")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_feedback_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
    )
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.create_index("ix_feedback_target", ["org_id", "target_id"], unique=False)

    op.create_table(
        "prompts",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=True),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", capstan.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_prompts_org_id_organizations")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_prompts_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompts")),
        sa.UniqueConstraint("org_id", "name", name=op.f("uq_prompts_org_id")),
    )
    with op.batch_alter_table("prompts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_prompts_org_id"), ["org_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_prompts_project_id"), ["project_id"], unique=False)

    op.create_table(
        "prompt_experiments",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("prompt_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("variants", sa.JSON(), nullable=False),
        sa.Column("sticky_by", sa.String(length=80), nullable=False),
        sa.Column("min_samples", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_by", sa.String(length=200), nullable=False),
        sa.Column("stopped_at", capstan.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("stopped_by", sa.String(length=200), nullable=True),
        sa.Column("promoted_version", sa.Integer(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", capstan.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('running', 'stopped')", name=op.f("ck_prompt_experiments_status")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_prompt_experiments_org_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["prompt_id"], ["prompts.id"], name=op.f("fk_prompt_experiments_prompt_id_prompts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompt_experiments")),
        sa.UniqueConstraint("org_id", "name", name=op.f("uq_prompt_experiments_org_id")),
    )
    with op.batch_alter_table("prompt_experiments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_prompt_experiments_org_id"), ["org_id"], unique=False)
        batch_op.create_index(
            "uq_prompt_experiments_running",
            ["prompt_id", "label"],
            unique=True,
            sqlite_where=sa.text("status = 'running'"),
            postgresql_where=sa.text("status = 'running'"),
        )

    op.create_table(
        "prompt_label_moves",
        sa.Column("prompt_id", sa.Uuid(), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("undone", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("moved_by", sa.String(length=200), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", capstan.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('move', 'rollback')", name=op.f("ck_prompt_label_moves_kind")),
        sa.ForeignKeyConstraint(
            ["prompt_id"], ["prompts.id"], name=op.f("fk_prompt_label_moves_prompt_id_prompts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompt_label_moves")),
    )
    with op.batch_alter_table("prompt_label_moves", schema=None) as batch_op:
        batch_op.create_index(
            "ix_prompt_label_moves_label", ["prompt_id", "label", "created_at"], unique=False
        )

    op.create_table(
        "prompt_labels",
        sa.Column("prompt_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", capstan.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["prompt_id"], ["prompts.id"], name=op.f("fk_prompt_labels_prompt_id_prompts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompt_labels")),
        sa.UniqueConstraint("prompt_id", "name", name=op.f("uq_prompt_labels_prompt_id")),
    )
    with op.batch_alter_table("prompt_labels", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_prompt_labels_prompt_id"), ["prompt_id"], unique=False)

    op.create_table(
        "prompt_versions",
        sa.Column("prompt_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("messages", sa.JSON(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column("message", sa.String(length=500), nullable=True),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", capstan.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(messages IS NULL) <> (text IS NULL)", name=op.f("ck_prompt_versions_one_template")
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_prompt_versions_version_positive")),
        sa.ForeignKeyConstraint(
            ["prompt_id"], ["prompts.id"], name=op.f("fk_prompt_versions_prompt_id_prompts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompt_versions")),
        sa.UniqueConstraint("prompt_id", "version", name=op.f("uq_prompt_versions_prompt_id")),
    )
    with op.batch_alter_table("prompt_versions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_prompt_versions_prompt_id"), ["prompt_id"], unique=False
        )

    op.add_column(
        "projects",
        sa.Column("prompt_approval", sa.Boolean(), server_default=sa.false(), nullable=False),
    )

    # On PostgreSQL, a column added to the partitioned `request_events` reaches every partition.
    op.add_column("request_events", sa.Column("prompt_name", sa.String(length=100), nullable=True))
    op.add_column("request_events", sa.Column("prompt_version", sa.Integer(), nullable=True))
    op.add_column("request_events", sa.Column("experiment_id", sa.Uuid(), nullable=True))
    op.create_index(
        "ix_request_events_experiment",
        "request_events",
        ["experiment_id"],
        unique=False,
        sqlite_where=sa.text("experiment_id IS NOT NULL"),
        postgresql_where=sa.text("experiment_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_request_events_experiment", table_name="request_events")
    with op.batch_alter_table("request_events", schema=None) as batch_op:
        batch_op.drop_column("experiment_id")
        batch_op.drop_column("prompt_version")
        batch_op.drop_column("prompt_name")

    if _sqlite():
        op.execute("ALTER TABLE projects DROP COLUMN prompt_approval")
    else:
        op.drop_column("projects", "prompt_approval")

    with op.batch_alter_table("prompt_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_prompt_versions_prompt_id"))

    op.drop_table("prompt_versions")
    with op.batch_alter_table("prompt_labels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_prompt_labels_prompt_id"))

    op.drop_table("prompt_labels")
    with op.batch_alter_table("prompt_label_moves", schema=None) as batch_op:
        batch_op.drop_index("ix_prompt_label_moves_label")

    op.drop_table("prompt_label_moves")
    with op.batch_alter_table("prompt_experiments", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_prompt_experiments_running",
            sqlite_where=sa.text("status = 'running'"),
            postgresql_where=sa.text("status = 'running'"),
        )
        batch_op.drop_index(batch_op.f("ix_prompt_experiments_org_id"))

    op.drop_table("prompt_experiments")
    with op.batch_alter_table("prompts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_prompts_project_id"))
        batch_op.drop_index(batch_op.f("ix_prompts_org_id"))

    op.drop_table("prompts")
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.drop_index("ix_feedback_target")

    op.drop_table("feedback")
