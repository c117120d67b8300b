"""token life cycle and external identities: API token label and expiry, JWT identities
(issuer + subject) kept apart from local users

Revision ID: 1401_token_lifecycle
Revises: 1501_run_leases
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "1401_token_lifecycle"
down_revision = "1501_run_leases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as table:
        table.add_column(sa.Column("label", sa.String(length=128), nullable=True))
        table.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "external_identities",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("issuer", sa.String(length=512), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_external_identities_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_external_identities")),
        sa.UniqueConstraint("issuer", "subject", name=op.f("uq_external_identities_issuer")),
        sa.UniqueConstraint("user_id", name=op.f("uq_external_identities_user_id")),
    )


def downgrade() -> None:
    op.drop_table("external_identities")
    with op.batch_alter_table("api_tokens") as table:
        table.drop_column("expires_at")
        table.drop_column("label")
