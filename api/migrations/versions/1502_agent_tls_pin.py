"""toolboxes: the pinned TLS certificate of each agent

Revision ID: 1502_agent_tls_pin
Revises: 1401_token_lifecycle
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "1502_agent_tls_pin"
down_revision = "1401_token_lifecycle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Both empty: not learnt yet (the console learns them over SSH before reading).
    with op.batch_alter_table("toolboxes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("agent_tls", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("agent_certificate", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("toolboxes", schema=None) as batch_op:
        batch_op.drop_column("agent_certificate")
        batch_op.drop_column("agent_tls")
