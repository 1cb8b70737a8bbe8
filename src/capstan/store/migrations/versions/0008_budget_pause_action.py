"""budgets: a threshold at which a budget pauses its own scope

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 03:00:00

On SQLite the column is added and dropped in place, not by rebuilding `budgets` as batch mode
would: dropping the old table with foreign keys on cascades to `budget_alerts` and would erase
every recorded alert.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_CHECKS = (
    (
        "ck_budgets_pause_at_range",
        "pause_at_percent IS NULL OR (pause_at_percent >= 1 AND pause_at_percent <= 1000)",
    ),
    (
        "ck_budgets_pause_at_scope",
        "pause_at_percent IS NULL OR scope_kind IN ('key', 'project', 'team', 'department')",
    ),
)


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    if _sqlite():
        checks = " ".join(f"CONSTRAINT {name} CHECK ({rule})" for name, rule in _CHECKS)
        op.execute(f"ALTER TABLE budgets ADD COLUMN pause_at_percent INTEGER {checks}")
        return
    op.add_column("budgets", sa.Column("pause_at_percent", sa.Integer(), nullable=True))
    for name, rule in _CHECKS:
        op.create_check_constraint(op.f(name), "budgets", rule)


def downgrade() -> None:
    if _sqlite():
        op.execute("ALTER TABLE budgets DROP COLUMN pause_at_percent")
        return
    for name, _ in reversed(_CHECKS):
        op.drop_constraint(op.f(name), "budgets", type_="check")
    op.drop_column("budgets", "pause_at_percent")
