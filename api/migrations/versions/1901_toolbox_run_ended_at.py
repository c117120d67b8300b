"""toolboxes.run_ended_at: when the last run holding the toolbox ended (its lock freed), so
a fresh read checks it on the row it loads anyway instead of querying the runs

Revision ID: 1901_toolbox_run_ended_at
Revises: 1701_rollouts
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "1901_toolbox_run_ended_at"
down_revision = "1701_rollouts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("toolboxes") as table:
        table.add_column(sa.Column("run_ended_at", sa.DateTime(timezone=True), nullable=True))
    # Runs that ended before this column existed still count.
    op.execute(
        "UPDATE toolboxes SET run_ended_at = (SELECT max(runs.finished_at) FROM runs "
        "WHERE runs.toolbox_id = toolboxes.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("toolboxes") as table:
        table.drop_column("run_ended_at")
